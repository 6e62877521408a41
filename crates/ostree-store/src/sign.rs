//! Ed25519 signatures as OSTree makes them (`ostree sign --sign-type=ed25519`).
//!
//! A signature covers the exact bytes of a commit object (or of the
//! `summary` file) and is kept under `ostree.sign.ed25519` (`aay`) in the
//! commit's detached metadata (or in `summary.sig`). Keys are base64 text:
//! a public key is 32 bytes; a secret key is libsodium's 64 bytes (seed
//! followed by the public key), or just the 32-byte seed.

use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

use crate::gvariant::{Type, Value};
use crate::object::{Checksum, ObjectType};
use crate::repo::{Repo, Result, msg};

/// The detached-metadata key of ed25519 signatures.
pub(crate) const ED25519_KEY: &str = "ostree.sign.ed25519";

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 (padding optional, whitespace ignored).
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes().filter(|c| !c.is_ascii_whitespace()) {
        if c == b'=' {
            break;
        }
        let v = B64.iter().position(|&x| x == c)? as u32;
        acc = acc << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// A signing key.
pub struct SecretKey(Ed25519KeyPair);

impl SecretKey {
    /// From base64 text: 64 bytes (seed ‖ public) or a 32-byte seed.
    pub fn from_base64(text: &str) -> Result<SecretKey> {
        let raw =
            base64_decode(text.trim()).ok_or_else(|| msg("ed25519: secret key is not base64"))?;
        let pair = match raw.len() {
            64 => Ed25519KeyPair::from_seed_and_public_key(&raw[..32], &raw[32..])
                .map_err(|_| msg("ed25519: secret key does not match its public half"))?,
            32 => Ed25519KeyPair::from_seed_unchecked(&raw)
                .map_err(|_| msg("ed25519: invalid seed"))?,
            n => {
                return Err(msg(format!(
                    "ed25519: secret key has {n} bytes, expected 64"
                )));
            }
        };
        Ok(SecretKey(pair))
    }

    /// A new random key.
    pub fn generate() -> Result<SecretKey> {
        let rng = ring::rand::SystemRandom::new();
        let mut seed = [0u8; 32];
        ring::rand::SecureRandom::fill(&rng, &mut seed).map_err(|_| msg("no randomness"))?;
        SecretKey::from_base64(&base64_encode(&seed))
    }

    /// The libsodium-format secret key (seed ‖ public), base64.
    pub fn to_base64(&self, seed: &[u8; 32]) -> String {
        let mut raw = seed.to_vec();
        raw.extend_from_slice(self.0.public_key().as_ref());
        base64_encode(&raw)
    }

    /// The public key, base64.
    pub fn public_base64(&self) -> String {
        base64_encode(self.0.public_key().as_ref())
    }

    /// Signs bytes.
    pub fn sign(&self, data: &[u8]) -> Vec<u8> {
        self.0.sign(data).as_ref().to_vec()
    }
}

/// Decodes base64 public keys (one per line in key files).
pub fn public_keys(text: &str) -> Result<Vec<Vec<u8>>> {
    let mut keys = Vec::new();
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let k = base64_decode(line)
            .ok_or_else(|| msg(format!("ed25519: public key {line:?} is not base64")))?;
        if k.len() != 32 {
            return Err(msg(format!(
                "ed25519: public key has {} bytes, expected 32",
                k.len()
            )));
        }
        keys.push(k);
    }
    Ok(keys)
}

/// The signatures in detached metadata.
pub fn signatures(meta: &[(String, Value)]) -> Vec<Vec<u8>> {
    meta.iter()
        .filter(|(k, _)| k == ED25519_KEY)
        .flat_map(|(_, v)| v.as_array().unwrap_or_default().iter())
        .filter_map(|s| s.as_bytes().map(<[u8]>::to_vec))
        .collect()
}

/// Whether any signature over `data` verifies with any of `keys`; the
/// error says how many signatures were tried.
pub fn verify(data: &[u8], sigs: &[Vec<u8>], keys: &[Vec<u8>]) -> Result<()> {
    if sigs.is_empty() {
        return Err(msg("ed25519: no signatures found"));
    }
    for s in sigs {
        for k in keys {
            if UnparsedPublicKey::new(&ED25519, k).verify(data, s).is_ok() {
                return Ok(());
            }
        }
    }
    Err(msg(format!(
        "ed25519: no valid signature among {} found for the {} trusted key(s)",
        sigs.len(),
        keys.len()
    )))
}

/// Adds a signature to `meta`'s `ostree.sign.ed25519` list.
pub(crate) fn add_signature(meta: &mut Vec<(String, Value)>, sig: Vec<u8>) {
    let mut sigs = signatures(meta);
    if sigs.contains(&sig) {
        return;
    }
    sigs.push(sig);
    let v = Value::Array(
        Type::Array(Box::new(Type::Byte)),
        sigs.into_iter().map(Value::Bytes).collect(),
    );
    match meta.iter_mut().find(|(k, _)| k == ED25519_KEY) {
        Some(e) => e.1 = v,
        None => meta.push((ED25519_KEY.to_string(), v)),
    }
}

/// Signs a commit, storing the signature in its detached metadata.
pub fn sign_commit(repo: &Repo, commit: &Checksum, key: &SecretKey) -> Result<()> {
    let bytes = repo.load_meta_bytes(commit, ObjectType::Commit)?;
    let mut meta = repo.load_commitmeta(commit)?.unwrap_or_default();
    add_signature(&mut meta, key.sign(&bytes));
    write_commitmeta(repo, commit, meta)
}

/// Replaces a commit's detached metadata.
pub fn write_commitmeta(repo: &Repo, commit: &Checksum, meta: Vec<(String, Value)>) -> Result<()> {
    let data = Value::vardict(meta).to_bytes();
    let path = repo.object_path(commit, ObjectType::CommitMeta);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| msg(format!("{}: {e}", dir.display())))?;
    }
    crate::repo::write_atomic(&path, &data, repo.fsync())
}

/// Verifies a stored commit against trusted public keys.
pub fn verify_commit(repo: &Repo, commit: &Checksum, keys: &[Vec<u8>]) -> Result<()> {
    let bytes = repo.load_meta_bytes(commit, ObjectType::Commit)?;
    let meta = repo.load_commitmeta(commit)?.unwrap_or_default();
    verify(&bytes, &signatures(&meta), keys).map_err(|e| msg(format!("commit {commit}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_roundtrip() {
        for n in 0..70 {
            let data: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(base64_decode(&base64_encode(&data)).unwrap(), data);
        }
        assert_eq!(base64_encode(b"foob"), "Zm9vYg==");
        assert!(base64_decode("!!").is_none());
    }

    #[test]
    fn sign_and_verify() {
        let seed = [9u8; 32];
        let key = SecretKey::from_base64(&base64_encode(&seed)).unwrap();
        let again = SecretKey::from_base64(&key.to_base64(&seed)).unwrap();
        assert_eq!(key.public_base64(), again.public_base64());
        let pk = public_keys(&key.public_base64()).unwrap();
        let sig = key.sign(b"commit bytes");
        verify(b"commit bytes", std::slice::from_ref(&sig), &pk).unwrap();
        assert!(verify(b"other bytes", &[sig], &pk).is_err());
        assert!(verify(b"commit bytes", &[], &pk).is_err());
    }
}
