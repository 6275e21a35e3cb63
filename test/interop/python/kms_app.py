"""An unmodified boto3 app: the KMS client from AWS_ENDPOINT_URL_KMS (set by cloister), throwaway
credentials. argv: KEY_ID CIPHERTEXT_B64. Prints RESULT {...} or ERROR <botocore's message>."""
import base64
import json
import sys

import boto3
import botocore

kms = boto3.client("kms", region_name="us-east-1", aws_access_key_id="AKIDBOTO3", aws_secret_access_key="throwaway")
try:
    dec = kms.decrypt(CiphertextBlob=base64.b64decode(sys.argv[2]))
    dk = kms.generate_data_key(KeyId=sys.argv[1], KeySpec="AES_256")
    dk_back = kms.decrypt(CiphertextBlob=dk["CiphertextBlob"])
    rnd = kms.generate_random(NumberOfBytes=64)
except botocore.exceptions.ClientError as err:
    print(f"ERROR {err}", flush=True)
    sys.exit(1)
print("RESULT " + json.dumps({
    "boto3": boto3.__version__,
    "botocore": botocore.__version__,
    "endpoint": kms.meta.endpoint_url,
    "plaintext": dec["Plaintext"].decode(),
    "data_key_bytes": len(dk["Plaintext"]),
    "data_key_matches": dk["Plaintext"] == dk_back["Plaintext"],
    "random_bytes": len(rnd["Plaintext"]),
    "recipient_leaked": "CiphertextForRecipient" in dec or "CiphertextForRecipient" in dk,
}), flush=True)
