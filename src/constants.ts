// Numbers fixed by something outside cloister (Enclaver's wire protocols, the Nitro hypervisor, the NSM
// driver) or chosen once for every part of cloister, each with where it comes from (as odyn's
// constants.rs). Settings an operator may change live in src/config/types.ts (DEFAULT_SETTINGS), not here.
// Nothing here imports anything: every folder may use it.

// --- vsock addressing --------------------------------------------------------------------------------

/** VMADDR_CID_ANY: listen on every CID (what the enclave side does). */
export const CID_ANY = 0xffffffff;
/** VMADDR_CID_HOST: the parent instance as seen from inside the enclave. */
export const CID_HOST = 2;
/** CID used for the enclave in dev mode when none is configured (any CID >= 4 the host does not use). */
export const DEV_ENCLAVE_CID = 16;

/** odyn's app status stream (constants.rs APP_STATUS_PORT): the host's `enclaver run` reads it. */
export const STATUS_PORT = 17000;
/** odyn's app log stream (constants.rs APP_LOG_PORT). */
export const APP_LOG_PORT = 17001;
/** Egress: the host relay listens here and the enclave's proxy dials it (constants.rs HTTP_EGRESS_VSOCK_PORT). */
export const EGRESS_VSOCK_PORT = 17002;

// --- default ports inside the enclave ----------------------------------------------------------------

/**
 * The egress proxy's loopback port when enclaver.yaml sets none (constants.rs HTTP_EGRESS_PROXY_PORT;
 * 9000 before Enclaver #193). The app's HTTP(S)_PROXY points here.
 */
export const DEFAULT_EGRESS_PROXY_PORT = 10000;

// --- NSM (aws-nitro-enclaves-nsm-api and the nitro_enclaves driver) ----------------------------------

/** Largest request the device takes (NSM_REQUEST_MAX_SIZE). */
export const NSM_REQUEST_MAX_SIZE = 0x1000;
/** Response buffer handed to the device (NSM_RESPONSE_MAX_SIZE). */
export const NSM_RESPONSE_MAX_SIZE = 0x3000;
/** user_data, nonce and public_key of an attestation: the NSM accepts at most 1024 bytes each. */
export const ATTESTATION_FIELD_MAX = 1024;
/** GetRandom returns up to this many bytes. */
export const GET_RANDOM_BYTES = 256;
/** PCRs 0..31 exist. */
export const MAX_PCRS = 32;

// --- Enclaver wire limits ----------------------------------------------------------------------------

/** `enclaver run` reads status lines of at most 1024 bytes (enclaver-compat.md §7.1). */
export const STATUS_LINE_MAX = 1024;
/** The egress frame length is a u16 (odyn casts `as u16`; a longer frame would be truncated there). */
export const MAX_EGRESS_FRAME = 0xffff;
