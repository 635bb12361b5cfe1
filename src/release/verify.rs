//! Checking downloaded files: detached binary OpenPGP signatures (streamed, made by a
//! primary key or a valid signing subkey of a keyring), `SHA256SUMS` files (bakery) and
//! Flatcar `DIGESTS` files. Owns the embedded Flatcar image signing key.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use pgp::composed::{Deserializable, SignedPublicKey, SignedPublicSubKey};
use pgp::packet::{RevocationCode, Signature, SignatureType, SubpacketData};
use pgp::types::{KeyDetails, PublicKeyTrait};
use sha2::{Digest, Sha256, Sha512};

/// The Flatcar image signing public key (armored), primary key
/// `F88C FEDE FF29 A5B4 D952 3864 E25D 9AED 0593 B34A`.
pub const FLATCAR_SIGNING_KEY: &[u8] = include_bytes!("../../keys/Flatcar_Image_Signing_Key.asc");

/// Errors of signature and checksum verification.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{source_name}: cannot read OpenPGP public key: {err}")]
    BadKey { source_name: String, err: String },
    #[error("{source_name}: contains no OpenPGP public key")]
    NoKey { source_name: String },
    #[error("{}: cannot read: {err}", path.display())]
    Io { path: PathBuf, err: io::Error },
    /// `err` (the OpenPGP library's words) is kept for debugging, not shown.
    #[error("{}: not a detached OpenPGP signature", path.display())]
    BadSignatureFile { path: PathBuf, err: String },
    #[error("{}: not a binary data signature", path.display())]
    NotBinarySignature { path: PathBuf },
    #[error("{}: signature names no issuer key", path.display())]
    NoIssuer { path: PathBuf },
    #[error("{}: made by key {issuer}, which is not a valid signing key of the trusted keyring", sig.display())]
    UnknownSigner { sig: PathBuf, issuer: String },
    #[error("{}: signing key {key} was not valid at signature time: {why}", sig.display())]
    KeyNotValid {
        sig: PathBuf,
        key: String,
        why: String,
    },
    /// `err` (the OpenPGP library's words) is kept for debugging, not shown.
    #[error("{}: BAD signature: {} (key {key}) was not made over this file", file.display(), sig.display())]
    BadSignature {
        file: PathBuf,
        sig: PathBuf,
        key: String,
        err: String,
    },
    #[error("{}: signature expired", sig.display())]
    SignatureExpired { sig: PathBuf },
    #[error("{source_name}: line {line}: not a checksum line: {text:?}")]
    SumsSyntax {
        source_name: String,
        line: usize,
        text: String,
    },
    #[error("{source_name}: no {algo} checksum for {file}")]
    NoChecksum {
        source_name: String,
        algo: &'static str,
        file: String,
    },
    #[error("{}: {algo} mismatch: expected {expected}, got {actual}", path.display())]
    ChecksumMismatch {
        path: PathBuf,
        algo: &'static str,
        expected: String,
        actual: String,
    },
}

/// A set of trusted OpenPGP certificates (primary keys with their subkeys).
#[derive(Debug, Clone)]
pub struct Keyring {
    keys: Vec<SignedPublicKey>,
}

impl Keyring {
    /// The embedded Flatcar image signing key.
    pub fn flatcar() -> Result<Keyring, VerifyError> {
        Keyring::from_armored(
            FLATCAR_SIGNING_KEY,
            "embedded Flatcar_Image_Signing_Key.asc",
        )
    }

    /// Parses one or more armored public keys; `source_name` is used in errors.
    pub fn from_armored(armored: &[u8], source_name: &str) -> Result<Keyring, VerifyError> {
        let bad = |e: pgp::errors::Error| VerifyError::BadKey {
            source_name: source_name.to_string(),
            err: e.to_string(),
        };
        let (iter, _headers) = SignedPublicKey::from_armor_many(armored).map_err(bad)?;
        let keys = iter.collect::<Result<Vec<_>, _>>().map_err(bad)?;
        if keys.is_empty() {
            return Err(VerifyError::NoKey {
                source_name: source_name.to_string(),
            });
        }
        Ok(Keyring { keys })
    }

    /// Reads an armored key file.
    pub fn from_file(path: &Path) -> Result<Keyring, VerifyError> {
        let data = crate::input::read_bytes(path, crate::input::JSON_CAP).map_err(|err| {
            VerifyError::Io {
                path: path.to_path_buf(),
                err,
            }
        })?;
        Keyring::from_armored(&data, &path.display().to_string())
    }

    /// Upper-case hex fingerprints of the primary keys.
    pub fn fingerprints(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|k| format!("{:X}", k.primary_key.fingerprint()))
            .collect()
    }
}

/// A good signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoodSignature {
    /// Fingerprint of the certificate's primary key.
    pub primary: String,
    /// Fingerprint of the key that made the signature (primary or subkey).
    pub signer: String,
    /// SHA-256 of the signed file (computed in the same pass).
    pub sha256: String,
    /// Size of the signed file.
    pub size: u64,
}

/// Verifies the detached binary signature `sig` over `file` against `keyring`, reading the
/// file once in a streaming pass that also computes its SHA-256.
pub fn verify_detached(
    keyring: &Keyring,
    file: &Path,
    sig: &Path,
) -> Result<GoodSignature, VerifyError> {
    let sig_bytes =
        crate::input::read_bytes(sig, crate::input::TEXT_CAP).map_err(|err| VerifyError::Io {
            path: sig.to_path_buf(),
            err,
        })?;
    let signature = parse_signature(&sig_bytes, sig)?;
    let sig_time = signature.created().map(|t| t.timestamp()).ok_or_else(|| {
        VerifyError::BadSignatureFile {
            path: sig.to_path_buf(),
            err: "no creation time".into(),
        }
    })?;
    if let Some(exp) = signature.signature_expiration_time() {
        let exp = exp.num_seconds();
        if exp > 0 && sig_time.saturating_add(exp) <= now() {
            return Err(VerifyError::SignatureExpired {
                sig: sig.to_path_buf(),
            });
        }
    }
    let issuers = issuer_ids(&signature);
    if issuers.is_empty() {
        return Err(VerifyError::NoIssuer {
            path: sig.to_path_buf(),
        });
    }
    // Find the key named by the signature.
    for cert in &keyring.keys {
        let primary = &cert.primary_key;
        if matches_issuer(&issuers, primary) {
            check_primary_valid(cert, sig_time)
                .map_err(|why| key_invalid(sig, &primary.fingerprint(), why))?;
            return check_data(&signature, primary, cert, file, sig);
        }
        for sub in &cert.public_subkeys {
            if matches_issuer(&issuers, &sub.key) {
                check_primary_valid(cert, sig_time)
                    .and_then(|()| check_subkey_valid(cert, sub, sig_time))
                    .map_err(|why| key_invalid(sig, &sub.key.fingerprint(), why))?;
                return check_data(&signature, &sub.key, cert, file, sig);
            }
        }
    }
    Err(VerifyError::UnknownSigner {
        sig: sig.to_path_buf(),
        issuer: issuers.join(" / "),
    })
}

fn key_invalid(sig: &Path, fpr: &pgp::types::Fingerprint, why: String) -> VerifyError {
    VerifyError::KeyNotValid {
        sig: sig.to_path_buf(),
        key: format!("{fpr:X}"),
        why,
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn parse_signature(bytes: &[u8], path: &Path) -> Result<Signature, VerifyError> {
    let bad = |err: String| VerifyError::BadSignatureFile {
        path: path.to_path_buf(),
        err,
    };
    let looks_armored = bytes.starts_with(b"-----BEGIN");
    let sig = if looks_armored {
        pgp::composed::DetachedSignature::from_armor_single(bytes)
            .map(|(s, _)| s)
            .map_err(|e| bad(e.to_string()))?
    } else {
        pgp::composed::DetachedSignature::from_bytes(bytes).map_err(|e| bad(e.to_string()))?
    };
    let signature = sig.signature;
    if signature.typ() != Some(SignatureType::Binary) {
        return Err(VerifyError::NotBinarySignature {
            path: path.to_path_buf(),
        });
    }
    Ok(signature)
}

/// Key IDs and fingerprints named as issuer, upper-case hex.
fn issuer_ids(sig: &Signature) -> Vec<String> {
    let mut ids: Vec<String> = sig
        .issuer_fingerprint()
        .iter()
        .map(|f| format!("{f:X}"))
        .collect();
    ids.extend(
        sig.issuer()
            .iter()
            .map(|k| hex(k.as_ref()).to_ascii_uppercase()),
    );
    ids
}

fn matches_issuer(issuers: &[String], key: &impl KeyDetails) -> bool {
    let fpr = format!("{:X}", key.fingerprint());
    let id = hex(key.key_id().as_ref()).to_ascii_uppercase();
    issuers.iter().any(|i| *i == fpr || *i == id)
}

fn created(sig: &Signature) -> i64 {
    sig.created().map(|t| t.timestamp()).unwrap_or(i64::MIN)
}

fn has_key_flags(sig: &Signature) -> bool {
    sig.config().is_some_and(|c| {
        c.hashed_subpackets()
            .any(|p| matches!(p.data, SubpacketData::KeyFlags(_)))
    })
}

/// Whether a revocation signature invalidates a key for a signature made at `sig_time`:
/// hard revocations (compromised, unspecified) always do; soft ones (superseded, retired)
/// only for signatures made after the revocation.
fn revokes(rev: &Signature, sig_time: i64) -> bool {
    match rev.revocation_reason_code() {
        Some(RevocationCode::KeySuperseded) | Some(RevocationCode::KeyRetired) => {
            created(rev) <= sig_time
        }
        _ => true,
    }
}

fn check_primary_valid(cert: &SignedPublicKey, sig_time: i64) -> Result<(), String> {
    let primary = &cert.primary_key;
    for rev in &cert.details.revocation_signatures {
        if rev.verify_key(primary).is_ok() && revokes(rev, sig_time) {
            return Err("the primary key is revoked".into());
        }
    }
    let created_at = primary.created_at().timestamp();
    if sig_time < created_at {
        return Err("signature is older than the primary key".into());
    }
    // Newest valid self-signature (direct key or user id certification) made before the
    // data signature carries the expiration time and the key flags.
    let mut best: Option<&Signature> = None;
    for s in &cert.details.direct_signatures {
        if created(s) <= sig_time
            && s.verify_key(primary).is_ok()
            && best.is_none_or(|b| created(s) > created(b))
        {
            best = Some(s);
        }
    }
    for user in &cert.details.users {
        for s in &user.signatures {
            if s.is_certification()
                && created(s) <= sig_time
                && s.verify_certification(primary, pgp::types::Tag::UserId, &user.id)
                    .is_ok()
                && best.is_none_or(|b| created(s) > created(b))
            {
                best = Some(s);
            }
        }
    }
    let Some(selfsig) = best else {
        return Err("no valid self-signature made before the signature".into());
    };
    if expired(selfsig, created_at, sig_time) {
        return Err("the primary key had expired".into());
    }
    Ok(())
}

/// Whether the key expiration `sig` (a self- or binding signature) sets for a key
/// created at `created_at` had passed at `sig_time`.
fn expired(sig: &Signature, created_at: i64, sig_time: i64) -> bool {
    sig.key_expiration_time()
        .map(|exp| exp.num_seconds())
        .is_some_and(|exp| exp > 0 && created_at.saturating_add(exp) <= sig_time)
}

fn check_subkey_valid(
    cert: &SignedPublicKey,
    sub: &SignedPublicSubKey,
    sig_time: i64,
) -> Result<(), String> {
    let primary = &cert.primary_key;
    for rev in &sub.signatures {
        if rev.typ() == Some(SignatureType::SubkeyRevocation)
            && rev.verify_subkey_binding(primary, &sub.key).is_ok()
            && revokes(rev, sig_time)
        {
            return Err("the subkey is revoked".into());
        }
    }
    let created_at = sub.key.created_at().timestamp();
    if sig_time < created_at {
        return Err("signature is older than the subkey".into());
    }
    let mut best: Option<&Signature> = None;
    for b in &sub.signatures {
        if b.typ() == Some(SignatureType::SubkeyBinding)
            && created(b) <= sig_time
            && b.verify_subkey_binding(primary, &sub.key).is_ok()
            && best.is_none_or(|x| created(b) > created(x))
        {
            best = Some(b);
        }
    }
    let Some(binding) = best else {
        return Err("no valid binding signature made before the signature".into());
    };
    if !binding.key_flags().sign() {
        return Err("the subkey is not signing-capable".into());
    }
    let Some(back) = binding.embedded_signature() else {
        return Err("the signing subkey has no primary key binding (back) signature".into());
    };
    back.verify_primary_key_binding(&sub.key, primary)
        .map_err(|e| format!("bad primary key binding signature: {e}"))?;
    if expired(binding, created_at, sig_time) {
        return Err("the subkey had expired".into());
    }
    Ok(())
}

/// Checks the primary key may sign data (key flags, when present), then hashes `file`.
fn check_data(
    signature: &Signature,
    key: &impl PublicKeyTrait,
    cert: &SignedPublicKey,
    file: &Path,
    sig: &Path,
) -> Result<GoodSignature, VerifyError> {
    let fpr = format!("{:X}", key.fingerprint());
    if key.fingerprint() == cert.primary_key.fingerprint() {
        let flags_forbid = cert
            .details
            .users
            .iter()
            .flat_map(|u| &u.signatures)
            .chain(&cert.details.direct_signatures)
            .filter(|s| has_key_flags(s))
            .max_by_key(|s| created(s))
            .is_some_and(|s| !s.key_flags().sign());
        if flags_forbid {
            return Err(VerifyError::KeyNotValid {
                sig: sig.to_path_buf(),
                key: fpr,
                why: "the primary key is not signing-capable".into(),
            });
        }
    }
    let f = File::open(file).map_err(|err| VerifyError::Io {
        path: file.to_path_buf(),
        err,
    })?;
    let mut reader = HashingReader {
        inner: BufReader::with_capacity(1 << 20, f),
        sha: Sha256::new(),
        size: 0,
        err: None,
    };
    let res = signature.verify(key, &mut reader);
    if let Some(err) = reader.err.take() {
        return Err(VerifyError::Io {
            path: file.to_path_buf(),
            err,
        });
    }
    res.map_err(|e| VerifyError::BadSignature {
        file: file.to_path_buf(),
        sig: sig.to_path_buf(),
        key: fpr.clone(),
        err: e.to_string(),
    })?;
    Ok(GoodSignature {
        primary: format!("{:X}", cert.primary_key.fingerprint()),
        signer: fpr,
        sha256: hex(&reader.sha.finalize()),
        size: reader.size,
    })
}

/// A reader that hashes what passes through and remembers its I/O error.
struct HashingReader<R> {
    inner: R,
    sha: Sha256,
    size: u64,
    err: Option<io::Error>,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.sha.update(&buf[..n]);
                self.size += n as u64;
                Ok(n)
            }
            Err(e) => {
                let kind = e.kind();
                let msg = e.to_string();
                self.err = Some(e);
                Err(io::Error::new(kind, msg))
            }
        }
    }
}

pub use crate::util::hex;

/// SHA-256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String, VerifyError> {
    Ok(hex(&hash_file::<Sha256>(path)?))
}

/// SHA-512 of a file, streamed.
pub fn sha512_file(path: &Path) -> Result<String, VerifyError> {
    Ok(hex(&hash_file::<Sha512>(path)?))
}

fn hash_file<D: Digest>(path: &Path) -> Result<Vec<u8>, VerifyError> {
    crate::util::digest_file::<D>(path)
        .map(|(d, _)| d)
        .map_err(|err| VerifyError::Io {
            path: path.to_path_buf(),
            err,
        })
}

/// Checksums by file name, parsed from a `SHA256SUMS` file or one section of a `DIGESTS` file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checksums {
    /// Algorithm name (`SHA256`, `SHA512`).
    pub algo: &'static str,
    /// Lower-case hex digest by base file name.
    pub sums: BTreeMap<String, String>,
    /// Where the list came from (for errors).
    pub source_name: String,
}

impl Checksums {
    /// Parses `<hex>  <file>` (or `<hex> *<file>`) lines of 64-digit SHA-256 sums.
    pub fn parse_sha256sums(text: &str, source_name: &str) -> Result<Checksums, VerifyError> {
        let mut sums = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            let (h, f) = parse_sum_line(t, 64).ok_or_else(|| VerifyError::SumsSyntax {
                source_name: source_name.to_string(),
                line: i + 1,
                text: line.to_string(),
            })?;
            sums.insert(f, h);
        }
        Ok(Checksums {
            algo: "SHA256",
            sums,
            source_name: source_name.to_string(),
        })
    }

    /// The `# SHA512 HASH` section of a Flatcar `DIGESTS` file.
    pub fn parse_digests_sha512(text: &str, source_name: &str) -> Result<Checksums, VerifyError> {
        let mut sums = BTreeMap::new();
        let mut in_section = false;
        for (i, line) in text.lines().enumerate() {
            let t = line.trim();
            if let Some(h) = t.strip_prefix('#') {
                let h = h.trim();
                in_section = h.eq_ignore_ascii_case("SHA512 HASH");
                continue;
            }
            if !in_section || t.is_empty() {
                continue;
            }
            let (h, f) = parse_sum_line(t, 128).ok_or_else(|| VerifyError::SumsSyntax {
                source_name: source_name.to_string(),
                line: i + 1,
                text: line.to_string(),
            })?;
            sums.insert(f, h);
        }
        Ok(Checksums {
            algo: "SHA512",
            sums,
            source_name: source_name.to_string(),
        })
    }

    /// The expected digest for a base file name.
    pub fn get(&self, file: &str) -> Option<&str> {
        self.sums.get(file).map(String::as_str)
    }

    /// The expected digest for `name`, or an error naming the list and the file.
    pub fn require(&self, name: &str) -> Result<&str, VerifyError> {
        self.get(name).ok_or_else(|| VerifyError::NoChecksum {
            source_name: self.source_name.clone(),
            algo: self.algo,
            file: name.to_string(),
        })
    }

    /// Hashes `path` and compares it with the entry for `name`.
    pub fn check_file(&self, path: &Path, name: &str) -> Result<String, VerifyError> {
        let expected = self.require(name)?;
        let actual = match self.algo {
            "SHA512" => sha512_file(path)?,
            _ => sha256_file(path)?,
        };
        check_digest(path, self.algo, expected, &actual)?;
        Ok(actual)
    }
}

/// Compares two hex digests (case-insensitive).
pub fn check_digest(
    path: &Path,
    algo: &'static str,
    expected: &str,
    actual: &str,
) -> Result<(), VerifyError> {
    if expected.eq_ignore_ascii_case(actual) {
        Ok(())
    } else {
        Err(VerifyError::ChecksumMismatch {
            path: path.to_path_buf(),
            algo,
            expected: expected.to_ascii_lowercase(),
            actual: actual.to_string(),
        })
    }
}

fn parse_sum_line(t: &str, hex_len: usize) -> Option<(String, String)> {
    let (h, rest) = t.split_once(char::is_whitespace)?;
    if h.len() != hex_len || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let f = rest.trim_start();
    let f = f.strip_prefix('*').unwrap_or(f);
    // Keep only the base name: DIGESTS may list paths.
    let f = f.rsplit('/').next().unwrap_or(f);
    if f.is_empty() {
        return None;
    }
    Some((h.to_ascii_lowercase(), f.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flatcar_key_parses() {
        let k = Keyring::flatcar().unwrap();
        assert_eq!(
            k.fingerprints(),
            vec!["F88CFEDEFF29A5B4D9523864E25D9AED0593B34A".to_string()]
        );
        // Its current signing subkey is valid now, the revoked ones are not.
        let cert = &k.keys[0];
        let t = now();
        let valid: Vec<String> = cert
            .public_subkeys
            .iter()
            .filter(|s| check_subkey_valid(cert, s, t).is_ok())
            .map(|s| format!("{:X}", s.key.fingerprint()))
            .collect();
        if t < 1_804_464_000 {
            // 2027-03-08
            assert_eq!(valid, vec!["52F145DFD00BBDCD928CBB5A32DA80F91EF52974"]);
        }
        assert!(check_primary_valid(cert, t).is_ok());
    }

    #[test]
    fn bad_keys() {
        assert!(matches!(
            Keyring::from_armored(b"hello", "k.asc"),
            Err(VerifyError::BadKey { .. })
        ));
    }

    #[test]
    fn sha256sums() {
        let a = "a".repeat(64);
        let b = "B".repeat(64);
        let t = format!("{a}  docker-27.0-x86-64.raw\n{b} *wasmtime.conf\n\n");
        let s = Checksums::parse_sha256sums(&t, "SUMS").unwrap();
        assert_eq!(s.get("docker-27.0-x86-64.raw"), Some(a.as_str()));
        assert_eq!(s.get("wasmtime.conf"), Some("b".repeat(64).as_str()));
        let e = s.require("nope.raw").unwrap_err();
        assert_eq!(e.to_string(), "SUMS: no SHA256 checksum for nope.raw");
        assert!(Checksums::parse_sha256sums("xyz  f\n", "SUMS").is_err());
    }

    #[test]
    fn digests() {
        let md5 = "0".repeat(32);
        let sha1 = "1".repeat(40);
        let sha512 = "2".repeat(128);
        let t = format!(
            "# MD5 HASH\n{md5}  version.txt\n# SHA1 HASH\n{sha1}  version.txt\n\
             # SHA512 HASH\n{sha512}  version.txt\n"
        );
        let d = Checksums::parse_digests_sha512(&t, "D").unwrap();
        assert_eq!(d.get("version.txt"), Some(sha512.as_str()));
        assert_eq!(d.sums.len(), 1);
    }

    #[test]
    fn check_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"abc").unwrap();
        let sha = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(sha256_file(&p).unwrap(), sha);
        let s = Checksums::parse_sha256sums(&format!("{sha}  f\n"), "S").unwrap();
        s.check_file(&p, "f").unwrap();
        std::fs::write(&p, b"abd").unwrap();
        let e = s.check_file(&p, "f").unwrap_err();
        assert!(e.to_string().contains("SHA256 mismatch"), "{e}");
        let d = format!("# SHA512 HASH\n{}  f\n", sha512_file(&p).unwrap());
        Checksums::parse_digests_sha512(&d, "D")
            .unwrap()
            .check_file(&p, "f")
            .unwrap();
    }
}
