package main

// The AWS SDK for Go v2 KMS client, configured the ordinary way (LoadDefaultConfig) with the endpoint
// cloister hands the app.

import (
	"context"
	"encoding/base64"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
)

func newSdkClient(endpoint, region string, creds aws.CredentialsProvider) (*kms.Client, error) {
	cfg, err := config.LoadDefaultConfig(context.Background(),
		config.WithRegion(region),
		config.WithCredentialsProvider(creds),
		config.WithRetryMaxAttempts(1),
	)
	if err != nil {
		return nil, err
	}
	return kms.NewFromConfig(cfg, func(o *kms.Options) { o.BaseEndpoint = aws.String(endpoint) }), nil
}

func throwawayCreds() aws.CredentialsProvider {
	return credentials.NewStaticCredentialsProvider("AKIDGOSDK", "go-sdk-throwaway", "")
}

func sdk(endpoint, region, keyId, blobB64 string) (any, error) {
	blob, err := base64.StdEncoding.DecodeString(blobB64)
	if err != nil {
		return nil, err
	}
	c, err := newSdkClient(endpoint, region, throwawayCreds())
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	dec, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: blob})
	if err != nil {
		return nil, err
	}
	dk, err := c.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: aws.String(keyId), KeySpec: types.DataKeySpecAes256})
	if err != nil {
		return nil, err
	}
	// The data key's ciphertext must decrypt back to the same plaintext key.
	dk2, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: dk.CiphertextBlob})
	if err != nil {
		return nil, err
	}
	rnd, err := c.GenerateRandom(ctx, &kms.GenerateRandomInput{NumberOfBytes: aws.Int32(48)})
	if err != nil {
		return nil, err
	}
	return map[string]any{
		"plaintext":        string(dec.Plaintext),
		"decrypt_key_id":   aws.ToString(dec.KeyId),
		"data_key_bytes":   len(dk.Plaintext),
		"data_key_matches": string(dk.Plaintext) == string(dk2.Plaintext),
		"random_bytes":     len(rnd.Plaintext),
		"recipient_leaked": dec.CiphertextForRecipient != nil || dk.CiphertextForRecipient != nil,
	}, nil
}
