//! CMS EnvelopedData (KMS CiphertextForRecipient) with RustCrypto and rasn: rasn-cms decodes the BER
//! (indefinite lengths, segmented OCTET STRINGs) and encodes DER; rsa does RSAES-OAEP (SHA-256, MGF1-SHA-256),
//! aes + cbc the content. Nothing here shares code with cloister or OpenSSL.
use aes::Aes256;
use cbc::cipher::{block_padding::Pkcs7, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use rasn::types::{Any, Integer, ObjectIdentifier, OctetString, SetOf};
use rasn_cms::{
    ContentInfo, EncryptedContentInfo, EnvelopedData, KeyTransRecipientInfo, RecipientIdentifier,
    RecipientInfo, CONTENT_DATA, CONTENT_ENVELOPED_DATA,
};
use rasn_pkix::AlgorithmIdentifier;
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey};
use rsa::{Oaep, RsaPrivateKey, RsaPublicKey};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const RSAES_OAEP: &rasn::types::Oid = rasn::types::Oid::ISO_MEMBER_BODY_US_RSADSI_PKCS1_RSAES_OAEP;
const AES256_CBC: &rasn::types::Oid = rasn_cms::algorithms::AES256_CBC;
/// RSAES-OAEP-params { [0] sha256 (NULL params), [1] mgf1(sha256) } as KMS sends them (RFC 4055 §4.1).
const OAEP_SHA256_PARAMS: [u8; 49] = [
    0x30, 0x2f, 0xa0, 0x0f, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
    0x01, 0x05, 0x00, 0xa1, 0x1c, 0x30, 0x1a, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01,
    0x01, 0x08, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00,
];

pub fn open(v: &Value) -> Result<Value, String> {
    let key = RsaPrivateKey::from_pkcs8_der(&crate::b64_field(v, "key_pkcs8")?).map_err(|e| format!("key: {e}"))?;
    let ber = crate::b64_field(v, "cms")?;
    let ci: ContentInfo = rasn::ber::decode(&ber).map_err(|e| format!("ContentInfo: {e}"))?;
    if ci.content_type != *CONTENT_ENVELOPED_DATA {
        return Err(format!("content type {}", ci.content_type));
    }
    let ed: EnvelopedData =
        rasn::ber::decode(ci.content.as_bytes()).map_err(|e| format!("EnvelopedData: {e}"))?;
    let recipients = ed.recipient_infos.to_vec();
    let ktri = match recipients.as_slice() {
        [RecipientInfo::KeyTransRecipientInfo(k)] => k,
        _ => return Err(format!("{} recipients or not KeyTrans", recipients.len())),
    };
    let spki = key.to_public_key().to_public_key_der().map_err(|e| e.to_string())?;
    match &ktri.rid {
        RecipientIdentifier::SubjectKeyIdentifier(ski) if ski.as_ref() == Sha256::digest(spki.as_bytes()).as_slice() => {}
        _ => return Err("rid is not SHA-256 of our SPKI".into()),
    }
    let kea = &ktri.key_encryption_algorithm;
    if kea.algorithm != *RSAES_OAEP || kea.parameters.as_ref().map(|p| p.as_bytes()) != Some(&OAEP_SHA256_PARAMS[..]) {
        return Err(format!("key encryption {} is not RSAES-OAEP SHA-256", kea.algorithm));
    }
    let cek = key
        .decrypt(Oaep::new::<Sha256>(), &ktri.encrypted_key)
        .map_err(|e| format!("OAEP: {e}"))?;
    let eci = &ed.encrypted_content_info;
    if eci.content_type != *CONTENT_DATA || eci.content_encryption_algorithm.algorithm != *AES256_CBC {
        return Err("content is not AES-256-CBC data".into());
    }
    let iv_any = eci.content_encryption_algorithm.parameters.as_ref().ok_or("no IV")?;
    let iv: OctetString = rasn::ber::decode(iv_any.as_bytes()).map_err(|e| format!("IV: {e}"))?;
    let content = eci.encrypted_content.as_ref().ok_or("no encryptedContent")?;
    let plaintext = cbc::Decryptor::<Aes256>::new_from_slices(&cek, &iv)
        .map_err(|e| format!("AES key/IV: {e}"))?
        .decrypt_padded_vec_mut::<Pkcs7>(content)
        .map_err(|e| format!("AES-CBC: {e}"))?;
    Ok(json!({ "plaintext": crate::b64(&plaintext) }))
}

pub fn seal(v: &Value) -> Result<Value, String> {
    let spki = crate::b64_field(v, "spki")?;
    let public = RsaPublicKey::from_public_key_der(&spki).map_err(|e| format!("spki: {e}"))?;
    let plaintext = crate::b64_field(v, "plaintext")?;
    let mut rng = rand::thread_rng();
    let mut cek = [0u8; 32];
    let mut iv = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rng, &mut cek);
    rand::RngCore::fill_bytes(&mut rng, &mut iv);
    let encrypted_key = public.encrypt(&mut rng, Oaep::new::<Sha256>(), &cek).map_err(|e| e.to_string())?;
    let content = cbc::Encryptor::<Aes256>::new_from_slices(&cek, &iv)
        .map_err(|e| e.to_string())?
        .encrypt_padded_vec_mut::<Pkcs7>(&plaintext);
    let der = |e: Result<Vec<u8>, rasn::error::EncodeError>| e.map_err(|e| e.to_string());
    let ed = EnvelopedData {
        version: Integer::from(2),
        originator_info: None,
        recipient_infos: SetOf::from_vec(vec![RecipientInfo::KeyTransRecipientInfo(KeyTransRecipientInfo {
            version: Integer::from(2),
            rid: RecipientIdentifier::SubjectKeyIdentifier(OctetString::from(Sha256::digest(&spki).to_vec())),
            key_encryption_algorithm: AlgorithmIdentifier {
                algorithm: ObjectIdentifier::from(RSAES_OAEP),
                parameters: Some(Any::new(OAEP_SHA256_PARAMS.to_vec())),
            },
            encrypted_key: OctetString::from(encrypted_key),
        })]),
        encrypted_content_info: EncryptedContentInfo {
            content_type: ObjectIdentifier::from(CONTENT_DATA),
            content_encryption_algorithm: AlgorithmIdentifier {
                algorithm: ObjectIdentifier::from(AES256_CBC),
                parameters: Some(Any::new(der(rasn::der::encode(&OctetString::from(iv.to_vec())))?)),
            },
            encrypted_content: Some(OctetString::from(content)),
        },
        unprotected_attrs: None,
    };
    let ci = ContentInfo {
        content_type: ObjectIdentifier::from(CONTENT_ENVELOPED_DATA),
        content: Any::new(der(rasn::der::encode(&ed))?),
    };
    Ok(json!({ "cms": crate::b64(&der(rasn::der::encode(&ci))?) }))
}
