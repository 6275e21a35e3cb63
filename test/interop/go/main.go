// interop-go: KMS clients that no one on this project wrote, driven by test/interop/*.test.ts and
// bench/interop-burst.ts. Each subcommand prints one JSON line on stdout (RESULT {...}) or an error
// line (ERROR <text>) and exits non-zero.
//
//	seal    KEY_ID            Vault's awskms seal wrapper: SetConfig, Encrypt a fresh seal key, Decrypt it
//	unseal  KEY_ID BLOB_JSON  the wrapper decrypts a blob from `seal` (Vault's unseal after a restart)
//	sdk     KEY_ID BLOB_B64   AWS SDK for Go v2: Decrypt, GenerateDataKey, GenerateRandom
//	burst   N BLOB_B64 [RECIPIENT_DOC_B64]  N concurrent Decrypts; latencies in ms
//
// The endpoint comes from AWS_KMS_ENDPOINT (what cloister gives the app), the region from AWS_REGION.
package main

import (
	"encoding/json"
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		fail(fmt.Errorf("usage: interop-go seal|unseal|sdk|burst ..."))
	}
	endpoint := os.Getenv("AWS_KMS_ENDPOINT")
	region := os.Getenv("AWS_REGION")
	if endpoint == "" || region == "" {
		fail(fmt.Errorf("AWS_KMS_ENDPOINT and AWS_REGION must be set"))
	}
	var out any
	var err error
	args := os.Args[2:]
	switch os.Args[1] {
	case "seal":
		out, err = seal(endpoint, region, arg(args, 0))
	case "unseal":
		out, err = unseal(endpoint, region, arg(args, 0), arg(args, 1))
	case "sdk":
		out, err = sdk(endpoint, region, arg(args, 0), arg(args, 1))
	case "burst":
		out, err = burst(endpoint, region, arg(args, 0), arg(args, 1), optArg(args, 2))
	default:
		err = fmt.Errorf("unknown subcommand %q", os.Args[1])
	}
	if err != nil {
		fail(err)
	}
	line, _ := json.Marshal(out)
	fmt.Printf("RESULT %s\n", line)
}

func arg(args []string, i int) string {
	if i >= len(args) {
		fail(fmt.Errorf("missing argument %d", i+1))
	}
	return args[i]
}

func optArg(args []string, i int) string {
	if i >= len(args) {
		return ""
	}
	return args[i]
}

func fail(err error) {
	fmt.Printf("ERROR %s\n", err)
	os.Exit(1)
}
