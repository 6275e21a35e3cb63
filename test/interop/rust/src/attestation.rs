//! Attestation documents checked the way AWS documents it (nitro.md: "Verifying the root of trust"),
//! with AWS's aws-nitro-enclaves-cose for COSE_Sign1, aws-nitro-enclaves-nsm-api's AttestationDoc for the
//! payload and OpenSSL's X509 store (validation time injected) for the chain
//! leaf <- cabundle[n-1] <- ... <- cabundle[1] <- pinned root.
use aws_nitro_enclaves_cose::crypto::Openssl;
use aws_nitro_enclaves_cose::CoseSign1;
use aws_nitro_enclaves_nsm_api::api::{AttestationDoc, Digest};
use openssl::stack::Stack;
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::verify::X509VerifyParam;
use openssl::x509::{X509StoreContext, X509};
use serde_json::{json, Value};

pub fn verify_all(v: &Value) -> Result<Value, String> {
    let items = v.as_array().ok_or("expected a JSON array")?;
    let mut out = Vec::new();
    for item in items {
        let doc = crate::b64_field(item, "doc")?;
        let root = item["root_pem"].as_str().ok_or("missing root_pem")?;
        let at_ms = item["at_ms"].as_i64();
        out.push(match verify(&doc, root.as_bytes(), at_ms) {
            Ok(d) => json!({
                "ok": true,
                "pcr0": hex::encode(d.pcrs.get(&0).map(|p| p.to_vec()).unwrap_or_default()),
                "timestamp": d.timestamp,
                "module_id": d.module_id,
            }),
            Err(e) => json!({ "ok": false, "error": e }),
        });
    }
    Ok(Value::Array(out))
}

fn verify(doc: &[u8], root_pem: &[u8], at_ms: Option<i64>) -> Result<AttestationDoc, String> {
    let cose = CoseSign1::from_bytes(doc).map_err(|e| format!("cose: {e:?}"))?;
    let payload = cose.get_payload::<Openssl>(None).map_err(|e| format!("cose payload: {e:?}"))?;
    let d = AttestationDoc::from_binary(&payload).map_err(|e| format!("payload: {e:?}"))?;
    check_fields(&d)?;
    let leaf = X509::from_der(&d.certificate).map_err(|e| format!("certificate: {e}"))?;
    let key = leaf.public_key().map_err(|e| format!("certificate key: {e}"))?;
    if !cose.verify_signature::<Openssl>(&key).map_err(|e| format!("signature: {e:?}"))? {
        return Err("signature: does not verify with the leaf key".into());
    }
    // The clock: the caller's, or the document's own timestamp.
    let at_secs = at_ms.unwrap_or(d.timestamp as i64) / 1000;
    let root = X509::from_pem(root_pem).map_err(|e| format!("root: {e}"))?;
    let mut store = X509StoreBuilder::new().map_err(|e| e.to_string())?;
    store.add_cert(root).map_err(|e| e.to_string())?;
    let mut param = X509VerifyParam::new().map_err(|e| e.to_string())?;
    param.set_time(at_secs);
    store.set_param(&param).map_err(|e| e.to_string())?;
    let store = store.build();
    let mut chain = Stack::new().map_err(|e| e.to_string())?;
    for c in d.cabundle.iter().skip(1) {
        chain
            .push(X509::from_der(c).map_err(|e| format!("cabundle: {e}"))?)
            .map_err(|e| e.to_string())?;
    }
    let mut ctx = X509StoreContext::new().map_err(|e| e.to_string())?;
    let (ok, err) = ctx
        .init(&store, &leaf, &chain, |c| Ok((c.verify_cert()?, c.error())))
        .map_err(|e| format!("chain: {e}"))?;
    if !ok {
        return Err(format!("chain: {}", err.error_string()));
    }
    Ok(d)
}

/// The syntactic checks AWS lists for the payload.
fn check_fields(d: &AttestationDoc) -> Result<(), String> {
    if d.module_id.is_empty() {
        return Err("fields: empty module_id".into());
    }
    if d.digest != Digest::SHA384 {
        return Err(format!("fields: digest {:?}", d.digest));
    }
    if d.timestamp == 0 {
        return Err("fields: timestamp 0".into());
    }
    if d.pcrs.is_empty() || d.pcrs.len() > 32 {
        return Err(format!("fields: {} PCRs", d.pcrs.len()));
    }
    for (i, p) in &d.pcrs {
        if *i >= 32 || ![32, 48, 64].contains(&p.len()) {
            return Err(format!("fields: PCR{i} of {} bytes", p.len()));
        }
    }
    if d.cabundle.is_empty() {
        return Err("fields: empty cabundle".into());
    }
    for f in [&d.public_key, &d.user_data, &d.nonce].into_iter().flatten() {
        if f.len() > 1024 {
            return Err("fields: optional field over 1024 bytes".into());
        }
    }
    Ok(())
}
