//! cloister-interop: checks of what cloister emits, made with published crates no one here wrote.
//! Driven by test/interop/rust.test.ts: one JSON request on stdin, one JSON answer on stdout; a failure
//! of the program itself exits non-zero with the reason on stderr.
//!
//!   verify-attestation  [{doc, root_pem, at_ms|null}]        -> [{ok, error?, pcr0?, timestamp?, module_id?}]
//!   nsm-requests        [serde JSON of nsm_api::Request]     -> [hex of serde_cbor::to_vec(request)]
//!   nsm-responses       [serde JSON of nsm_api::Response]    -> [hex of serde_cbor::to_vec(response)]
//!   cms-open            {key_pkcs8, cms}                     -> {plaintext}
//!   cms-seal            {spki, plaintext}                    -> {cms}
//! Byte fields travel as base64 (standard alphabet).
mod attestation;
mod cms;
mod nsm;

use std::io::Read;

fn main() {
    let op = std::env::args().nth(1).unwrap_or_default();
    let mut input = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut input) {
        fail(&format!("reading stdin: {e}"));
    }
    let request: serde_json::Value =
        serde_json::from_str(&input).unwrap_or_else(|e| fail(&format!("stdin is not JSON: {e}")));
    let answer = match op.as_str() {
        "verify-attestation" => attestation::verify_all(&request),
        "nsm-requests" => nsm::encode_requests(&request),
        "nsm-responses" => nsm::encode_responses(&request),
        "cms-open" => cms::open(&request),
        "cms-seal" => cms::seal(&request),
        _ => Err(format!("unknown operation {op:?}")),
    };
    match answer {
        Ok(v) => println!("{v}"),
        Err(e) => fail(&e),
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("cloister-interop: {msg}");
    std::process::exit(1)
}

/// A base64 field of a JSON object.
pub fn b64_field(v: &serde_json::Value, name: &str) -> Result<Vec<u8>, String> {
    use base64::Engine;
    let s = v[name].as_str().ok_or(format!("missing string field {name}"))?;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| format!("{name}: {e}"))
}

pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
