//! NSM request/response CBOR exactly as AWS's aws-nitro-enclaves-nsm-api produces it: the crate's own
//! Request/Response types, encoded with serde_cbor::to_vec as its driver does before the ioctl.
use aws_nitro_enclaves_nsm_api::api::{Request, Response};
use serde_json::Value;

fn encode_each<T: serde::de::DeserializeOwned + serde::Serialize>(v: &Value) -> Result<Value, String> {
    let items = v.as_array().ok_or("expected a JSON array")?;
    let mut out = Vec::new();
    for item in items {
        let value: T = serde_json::from_value(item.clone()).map_err(|e| format!("{item}: {e}"))?;
        let bytes = serde_cbor::to_vec(&value).map_err(|e| format!("{item}: {e}"))?;
        out.push(Value::String(hex::encode(bytes)));
    }
    Ok(Value::Array(out))
}

pub fn encode_requests(v: &Value) -> Result<Value, String> {
    encode_each::<Request>(v)
}

pub fn encode_responses(v: &Value) -> Result<Value, String> {
    encode_each::<Response>(v)
}
