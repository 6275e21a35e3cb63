package main

// N concurrent Decrypts of one ciphertext, each timed from send to answer (the burst from
// aws-nitro-enclaves-cli issue 413). With RECIPIENT_DOC_B64 the calls go straight to KMS with a
// Recipient (real credentials from the environment) and the answer is CiphertextForRecipient;
// without it they go to cloister's proxy with throwaway credentials and the answer is Plaintext.

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
)

func burst(endpoint, region, nText, blobB64, docB64 string) (any, error) {
	n, err := strconv.Atoi(nText)
	if err != nil || n < 1 || n > 1000 {
		return nil, fmt.Errorf("N must be 1..1000")
	}
	blob, err := base64.StdEncoding.DecodeString(blobB64)
	if err != nil {
		return nil, err
	}
	creds := throwawayCreds()
	var recipient *types.RecipientInfo
	if docB64 != "" {
		doc, err := base64.StdEncoding.DecodeString(docB64)
		if err != nil {
			return nil, err
		}
		recipient = &types.RecipientInfo{
			AttestationDocument:    doc,
			KeyEncryptionAlgorithm: types.KeyEncryptionMechanismRsaesOaepSha256,
		}
		creds = credentials.NewStaticCredentialsProvider(
			os.Getenv("BURST_ACCESS_KEY_ID"), os.Getenv("BURST_SECRET_ACCESS_KEY"), "")
	}
	c, err := newSdkClient(endpoint, region, creds)
	if err != nil {
		return nil, err
	}
	// One connection per request, as 30 separate callers would have.
	c = kms.New(c.Options(), func(o *kms.Options) {
		o.HTTPClient = &http.Client{Transport: &http.Transport{MaxConnsPerHost: 0, MaxIdleConnsPerHost: n}}
	})
	ms := make([]float64, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			t0 := time.Now()
			out, err := c.Decrypt(context.Background(), &kms.DecryptInput{CiphertextBlob: blob, Recipient: recipient})
			ms[i] = float64(time.Since(t0).Microseconds()) / 1000
			if err == nil && recipient == nil && len(out.Plaintext) == 0 {
				err = fmt.Errorf("no Plaintext")
			}
			if err == nil && recipient != nil && len(out.CiphertextForRecipient) == 0 {
				err = fmt.Errorf("no CiphertextForRecipient")
			}
			errs[i] = err
		}(i)
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	wall := float64(time.Since(t0).Microseconds()) / 1000
	for _, e := range errs {
		if e != nil {
			return nil, e
		}
	}
	return map[string]any{"ms": ms, "wall_ms": wall}, nil
}
