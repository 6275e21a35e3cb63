package main

// Vault's seal "awskms" stanza, as Vault hands it to the wrapper: the stanza's keys go in as a config map
// (kms_key_id, region, endpoint, access_key, secret_key) through wrapping.WithConfigMap, and Vault then
// calls SetConfig (which runs DescribeKey), Encrypt on init and Decrypt on every unseal. Vault logs the
// error Decrypt returns; the test checks that text.

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	wrapping "github.com/hashicorp/go-kms-wrapping/v2"
	"github.com/hashicorp/go-kms-wrapping/wrappers/awskms/v2"
)

type sealBlob struct {
	Ciphertext []byte `json:"ciphertext"`
	Iv         []byte `json:"iv"`
	KeyId      string `json:"key_id"`
	WrappedKey []byte `json:"wrapped_key"`
	Mechanism  uint64 `json:"mechanism"`
}

func newWrapper(endpoint, region, keyId string) (*awskms.Wrapper, map[string]string, error) {
	w := awskms.NewWrapper()
	// Throwaway credentials: inside the enclave the KMS proxy re-signs every request with its own.
	cfg, err := w.SetConfig(context.Background(), wrapping.WithConfigMap(map[string]string{
		"kms_key_id": keyId,
		"region":     region,
		"endpoint":   endpoint,
		"access_key": "AKIDVAULTSEAL",
		"secret_key": "vault-seal-throwaway",
	}))
	if err != nil {
		return nil, nil, err
	}
	return w, cfg.Metadata, nil
}

func seal(endpoint, region, keyId string) (any, error) {
	w, meta, err := newWrapper(endpoint, region, keyId)
	if err != nil {
		return nil, err
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	ctx := context.Background()
	blob, err := w.Encrypt(ctx, key)
	if err != nil {
		return nil, err
	}
	back, err := w.Decrypt(ctx, blob)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(key)
	encoded, _ := json.Marshal(sealBlob{
		Ciphertext: blob.Ciphertext,
		Iv:         blob.Iv,
		KeyId:      blob.KeyInfo.KeyId,
		WrappedKey: blob.KeyInfo.WrappedKey,
		Mechanism:  blob.KeyInfo.Mechanism,
	})
	return map[string]any{
		"metadata":      meta,
		"key_sha256":    hex.EncodeToString(sum[:]),
		"roundtrip":     string(back) == string(key),
		"blob":          string(encoded),
		"wrapper_keyid": blob.KeyInfo.KeyId,
	}, nil
}

func unseal(endpoint, region, keyId, blobJson string) (any, error) {
	var b sealBlob
	if err := json.Unmarshal([]byte(blobJson), &b); err != nil {
		return nil, fmt.Errorf("bad blob: %w", err)
	}
	w, _, err := newWrapper(endpoint, region, keyId)
	if err != nil {
		return nil, err
	}
	key, err := w.Decrypt(context.Background(), &wrapping.BlobInfo{
		Ciphertext: b.Ciphertext,
		Iv:         b.Iv,
		KeyInfo:    &wrapping.KeyInfo{Mechanism: b.Mechanism, KeyId: b.KeyId, WrappedKey: b.WrappedKey},
	})
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(key)
	return map[string]any{"key_sha256": hex.EncodeToString(sum[:])}, nil
}
