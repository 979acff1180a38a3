// Sizes fixed by the chain and by the tle ciphertext format, kept free of heavy
// imports so the CLI can check a commitment's size without loading crypto.

/** pallet_commitments' MAX_TIMELOCK_COMMITMENT_SIZE_BYTES: the ciphertext's upper bound. */
export const MAX_TIMELOCK_COMMITMENT_BYTES = 1024;

/**
 * Bytes the tle format adds around the plaintext: the G2 point (96), two
 * length-prefixed 32-byte hashes (2 x 40), the body's length (8), the AES-GCM
 * output's length and tag (8 + 16), the length-prefixed 12-byte nonce (20) and
 * the length-prefixed "AES_GCM_" suite (16).
 */
export const TLE_OVERHEAD_BYTES = 96 + 2 * (8 + 32) + 8 + (8 + 16) + (8 + 12) + (8 + 8);
