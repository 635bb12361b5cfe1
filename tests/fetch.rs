//! End-to-end tests of fetching a release and sysexts from a loopback HTTP server serving
//! a generated, gpg-signed release tree, with the server misbehaving on request.
//! Needs: gpg, lbzip2.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use flatbake::release::{
    self, Arch, DownloadError, Error, FetchOptions, HeadSource, Keyring, ProgressMode, ReleaseUrls,
    RetryPolicy, VerifyError, IMAGE, IMAGE_BZ2, VERSION_TXT,
};
use support::{Fault, Gpg, Server};

const VERSION: &str = "4593.2.5";
const DIR: &str = "/amd64-usr/4593.2.5";
const LTS_HEAD: &str =
    "FLATCAR_BUILD=4081\nFLATCAR_BRANCH=3\nFLATCAR_PATCH=6\nFLATCAR_VERSION=4081.3.6\n";

struct Fixtures {
    image: Vec<u8>,
    /// Release tree signed by key A's primary key.
    tree_a: BTreeMap<String, Vec<u8>>,
    /// The same tree signed by key B's signing subkey.
    tree_b: BTreeMap<String, Vec<u8>>,
    key_a: Vec<u8>,
    key_b: Vec<u8>,
    /// A signature by key A over other data.
    bad_image_sig: Vec<u8>,
    /// Key A's signature of [`LTS_HEAD`].
    lts_head_sig: Vec<u8>,
    ext_raw: Vec<u8>,
}

fn fixtures() -> &'static Fixtures {
    static F: OnceLock<Fixtures> = OnceLock::new();
    F.get_or_init(|| {
        let a = Gpg::primary_signer("Test Release A <a@example.invalid>");
        let b = Gpg::subkey_signer("Test Release B <b@example.invalid>");
        let image = support::sample_image(7);
        let bz2 = support::compress_with("lbzip2", &["-1", "-n", "2"], &image);
        let version_txt = format!(
            "FLATCAR_BUILD=4593\nFLATCAR_BRANCH=2\nFLATCAR_PATCH=5\nFLATCAR_VERSION={VERSION}\n\
             FLATCAR_VERSION_ID={VERSION}\nFLATCAR_BUILD_ID=\"\"\nFLATCAR_SDK_VERSION=4593.0.0\n"
        )
        .into_bytes();
        let oem = support::noise(70_000, 3);
        let releases_json = br#"{
            "current": {"channel": "stable"},
            "4593.2.5": {"channel": "stable", "architectures": ["amd64", "arm64"]},
            "4459.2.4": {"channel": "stable", "architectures": ["amd64", "arm64"]},
            "4601.0.0": {"channel": "alpha", "architectures": ["amd64"]}
        }"#
        .to_vec();
        let ext_raw = support::noise(150_000, 11);
        let sums = format!(
            "{}  test-1.0-x86-64.raw\n{}  noconf-2.0-x86-64.raw\n{}  bad-1.0-x86-64.raw\n",
            support::sha256(&ext_raw),
            support::sha256(&ext_raw),
            "0".repeat(64)
        );
        let tree = |g: &Gpg| {
            let mut t = BTreeMap::new();
            let mut put = |path: String, data: Vec<u8>, sign: bool| {
                if sign {
                    t.insert(format!("{path}.sig"), g.sign(&data));
                }
                t.insert(path, data);
            };
            put(format!("{DIR}/{IMAGE_BZ2}"), bz2.clone(), true);
            put(format!("{DIR}/{VERSION_TXT}"), version_txt.clone(), true);
            put(format!("{DIR}/oem-qemu.raw"), oem.clone(), true);
            put(
                "/amd64-usr/current/version.txt".into(),
                version_txt.clone(),
                true,
            );
            put("/releases.json".into(), releases_json.clone(), false);
            put(
                "/extensions/SHA256SUMS".into(),
                sums.clone().into_bytes(),
                false,
            );
            put(
                "/extensions/test-1.0-x86-64.raw".into(),
                ext_raw.clone(),
                false,
            );
            put(
                "/extensions/noconf-2.0-x86-64.raw".into(),
                ext_raw.clone(),
                false,
            );
            put(
                "/extensions/bad-1.0-x86-64.raw".into(),
                ext_raw.clone(),
                false,
            );
            put(
                "/extensions/missing-1.0-x86-64.raw".into(),
                ext_raw.clone(),
                false,
            );
            put(
                "/extensions/test.conf".into(),
                b"[Transfer]\nVerify=false\n".to_vec(),
                false,
            );
            t
        };
        let tree_a = tree(&a);
        let tree_b = tree(&b);
        // The subkey, not the primary key, made B's signatures.
        let sig = &tree_b[&format!("{DIR}/{VERSION_TXT}.sig")];
        assert!(
            !b.fingerprint.ends_with(&b.signer_of(sig)),
            "B signed with its primary"
        );
        let sig = &tree_a[&format!("{DIR}/{VERSION_TXT}.sig")];
        assert!(a.fingerprint.ends_with(&a.signer_of(sig)));
        Fixtures {
            bad_image_sig: a.sign(b"something else"),
            lts_head_sig: a.sign(LTS_HEAD.as_bytes()),
            key_a: a.public_key(),
            key_b: b.public_key(),
            image,
            tree_a,
            tree_b,
            ext_raw,
        }
    })
}

fn options(server: &Server, cache: &Path, key: &[u8], spec: &str) -> FetchOptions {
    let mut o = FetchOptions::new(spec.parse().unwrap(), Arch::X86_64, cache);
    o.urls = ReleaseUrls {
        release_template: server.url(),
        releases_json: format!("{}/releases.json", server.url()),
        bakery: server.url(),
    };
    o.keyring = Some(Keyring::from_armored(key, "test key").unwrap());
    // these tests serve made-up bytes as the image and OEM sysext: transport and
    // signatures only (tests/fetch_cli.rs checks contents with real fixture images)
    o.check_contents = false;
    o.download.retry = RetryPolicy {
        attempts: 4,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(40),
    };
    o.download.progress = ProgressMode::Quiet;
    o.decompress.progress = ProgressMode::Quiet;
    o
}

fn release_dir(cache: &Path) -> std::path::PathBuf {
    cache.join("amd64-usr").join(VERSION)
}

/// Nothing at the final paths of the image, and no staging file left behind.
fn assert_no_image(cache: &Path) {
    let dir = release_dir(cache);
    assert!(!dir.join(IMAGE_BZ2).exists());
    assert!(!dir.join(IMAGE).exists());
    assert!(!dir.join(format!("{IMAGE_BZ2}.unverified")).exists());
}

fn image_path() -> String {
    format!("{DIR}/{IMAGE_BZ2}")
}

#[test]
fn fetch_exact_version_then_cache_hit() {
    let f = fixtures();
    let server = Server::start(f.tree_a.clone());
    let cache = tempfile::tempdir().unwrap();
    let o = options(&server, cache.path(), &f.key_a, VERSION);
    let r = release::fetch_release(&o).unwrap();
    assert_eq!(r.release.version.to_string(), VERSION);
    assert_eq!(r.version_txt.get("FLATCAR_SDK_VERSION"), Some("4593.0.0"));
    assert!(r.verified);
    let stats = r.decompressed.unwrap();
    assert!(stats.blocks > 10, "{stats:?}");
    assert_eq!(stats.decompressed_bytes, f.image.len() as u64);
    let got = std::fs::read(&r.image).unwrap();
    assert_eq!(support::sha256(&got), support::sha256(&f.image));
    assert_eq!(r.image, release_dir(cache.path()).join(IMAGE));
    assert!(server
        .requests_for("/amd64-usr/current/version.txt")
        .is_empty());

    // Second run: everything comes from the cache, no request at all.
    server.clear_log();
    let r2 = release::fetch_release(&o).unwrap();
    assert!(r2.decompressed.is_none());
    assert!(r2.verified);
    assert_eq!(server.log(), vec![]);

    // A modified cached image is not trusted: it is rebuilt from the cached .bz2.
    std::fs::write(&r.image, b"tampered").unwrap();
    let r3 = release::fetch_release(&o).unwrap();
    assert!(r3.decompressed.is_some());
    assert_eq!(server.log(), vec![]);
    assert_eq!(
        std::fs::metadata(&r3.image).unwrap().len(),
        f.image.len() as u64
    );
}

#[test]
fn fetch_current_via_version_txt_and_releases_json() {
    let f = fixtures();
    let server = Server::start(f.tree_a.clone());
    let cache = tempfile::tempdir().unwrap();
    let o = options(&server, cache.path(), &f.key_a, "current");
    let r = release::resolve(&o).unwrap();
    assert_eq!(r.version.to_string(), VERSION);
    assert_eq!(
        server.requests_for("/amd64-usr/current/version.txt").len(),
        1
    );

    let mut o = options(&server, cache.path(), &f.key_a, "stable");
    o.head_source = HeadSource::ReleasesJson;
    server.clear_log();
    let r = release::fetch_release(&o).unwrap();
    assert_eq!(r.release.version.to_string(), VERSION);
    assert_eq!(server.requests_for("/releases.json").len(), 1);
    assert!(server
        .requests_for("/amd64-usr/current/version.txt")
        .is_empty());

    let mut o = options(&server, cache.path(), &f.key_a, "beta");
    o.head_source = HeadSource::ReleasesJson;
    let e = release::resolve(&o).unwrap_err();
    assert!(e.to_string().contains("no beta release for x86-64"), "{e}");

    // the head is a release file like any other: badly signed or unsigned, it is refused
    let head = "/amd64-usr/current/version.txt";
    server.set(&format!("{head}.sig"), f.bad_image_sig.clone());
    let o = options(&server, cache.path(), &f.key_a, "current");
    let e = release::resolve(&o).unwrap_err();
    assert!(
        matches!(e, Error::Verify(VerifyError::BadSignature { .. })),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .starts_with(&format!("{}{head}: BAD signature", server.url())),
        "{e}"
    );
    server.remove(&format!("{head}.sig"));
    let e = release::resolve(&o).unwrap_err();
    assert!(
        matches!(e, Error::Download(DownloadError::NotFound { .. })),
        "{e:?}"
    );
    let names: Vec<_> = std::fs::read_dir(cache.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().starts_with(".flatbake-"))
        .collect();
    assert!(names.is_empty(), "{names:?}");
}

#[test]
fn lts_stream_resolves_through_its_own_head() {
    let f = fixtures();
    let server = Server::start(f.tree_a.clone());
    server.set(
        "/amd64-usr/current-2024/version.txt",
        LTS_HEAD.as_bytes().to_vec(),
    );
    server.set(
        "/amd64-usr/current-2024/version.txt.sig",
        f.lts_head_sig.clone(),
    );
    let cache = tempfile::tempdir().unwrap();
    let o = options(&server, cache.path(), &f.key_a, "lts-2024");
    let r = release::resolve(&o).unwrap();
    assert_eq!(r.version.to_string(), "4081.3.6");
    assert_eq!(r.channel.to_string(), "lts");
    assert_eq!(
        server
            .requests_for("/amd64-usr/current-2024/version.txt")
            .len(),
        1
    );
    let o = options(&server, cache.path(), &f.key_a, "lts-2022");
    let e = release::resolve(&o).unwrap_err();
    assert!(e.to_string().contains("current-2022/version.txt"), "{e}");
}

#[test]
fn subkey_signatures_verify() {
    let f = fixtures();
    let server = Server::start(f.tree_b.clone());
    let cache = tempfile::tempdir().unwrap();
    let o = options(&server, cache.path(), &f.key_b, VERSION);
    let r = release::fetch_release(&o).unwrap();
    assert!(r.verified);
    let marker = std::fs::read_to_string(release::cache::marker_path(
        &release_dir(cache.path()).join(IMAGE_BZ2),
    ))
    .unwrap();
    // Signed by the subkey, not the primary key.
    let primary = Keyring::from_armored(&f.key_b, "b").unwrap().fingerprints()[0].clone();
    assert!(marker.contains("openpgp:"), "{marker}");
    assert!(!marker.contains(&primary), "{marker}");
}

#[test]
fn missing_image_is_not_found() {
    let f = fixtures();
    let server = Server::start(f.tree_a.clone());
    server.remove(&image_path());
    let cache = tempfile::tempdir().unwrap();
    let o = options(&server, cache.path(), &f.key_a, VERSION);
    let e = release::fetch_release(&o).unwrap_err();
    match &e {
        Error::Download(DownloadError::NotFound { url, status: 404 }) => {
            assert_eq!(url, &format!("{}{}", server.url(), image_path()));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(e
        .to_string()
        .ends_with("flatcar_production_image.bin.bz2: not found (HTTP 404)"));
    assert_eq!(
        server.requests_for(&image_path()).len(),
        1,
        "404 is not retried"
    );
    assert_no_image(cache.path());
}

#[test]
fn bad_signature_is_refused() {
    let f = fixtures();
    let server = Server::start(f.tree_a.clone());
    server.set(&format!("{}.sig", image_path()), f.bad_image_sig.clone());
    let cache = tempfile::tempdir().unwrap();
    let o = options(&server, cache.path(), &f.key_a, VERSION);
    let e = release::fetch_release(&o).unwrap_err();
    assert!(
        matches!(e, Error::Verify(VerifyError::BadSignature { .. })),
        "{e:?}"
    );
    assert!(e.to_string().contains("BAD signature"), "{e}");
    assert_no_image(cache.path());
    // version.txt was fine and stays cached.
    assert!(release_dir(cache.path()).join(VERSION_TXT).exists());
}

#[test]
fn signature_by_another_key_is_refused() {
    let f = fixtures();
    // Files signed by B, keyring A.
    let server = Server::start(f.tree_b.clone());
    let cache = tempfile::tempdir().unwrap();
    let o = options(&server, cache.path(), &f.key_a, VERSION);
    let e = release::fetch_release(&o).unwrap_err();
    assert!(
        matches!(e, Error::Verify(VerifyError::UnknownSigner { .. })),
        "{e:?}"
    );
    assert!(!release_dir(cache.path()).join(VERSION_TXT).exists());
    assert_no_image(cache.path());

    // The default keyring is Flatcar's, which did not sign the test files either.
    let mut o = options(&server, cache.path(), &f.key_a, VERSION);
    o.keyring = None;
    let e = release::fetch_release(&o).unwrap_err();
    assert!(
        matches!(e, Error::Verify(VerifyError::UnknownSigner { .. })),
        "{e:?}"
    );
}

#[test]
fn insecure_mode_accepts_bad_signature_and_marks_it() {
    let f = fixtures();
    let server = Server::start(f.tree_b.clone());
    server.remove(&format!("{DIR}/{VERSION_TXT}.sig"));
    let cache = tempfile::tempdir().unwrap();
    let mut o = options(&server, cache.path(), &f.key_a, VERSION);
    o.insecure_skip_verify = true;
    let r = release::fetch_release(&o).unwrap();
    assert!(!r.verified);
    assert_eq!(std::fs::read(&r.image).unwrap().len(), f.image.len());
    // A secure run does not trust what the insecure one cached.
    o.insecure_skip_verify = false;
    let e = release::fetch_release(&o).unwrap_err();
    assert!(
        matches!(e, Error::Download(DownloadError::NotFound { .. })),
        "{e:?}"
    );
}

#[test]
fn truncated_body_is_resumed() {
    let f = fixtures();
    let server = Server::start(f.tree_a.clone());
    let size = f.tree_a[&image_path()].len();
    server.fault(&image_path(), &[Fault::Cut(size / 3)]);
    let cache = tempfile::tempdir().unwrap();
    let o = options(&server, cache.path(), &f.key_a, VERSION);
    let r = release::fetch_release(&o).unwrap();
    assert!(r.verified);
    let reqs = server.requests_for(&image_path());
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!(reqs[0].range, None);
    assert_eq!(reqs[1].range, Some(format!("bytes={}-", size / 3)));
    assert_eq!(reqs[1].status, 206);
    assert_eq!(
        support::sha256(&std::fs::read(&r.image).unwrap()),
        support::sha256(&f.image)
    );
}

#[test]
fn dropped_connections_then_resume() {
    let f = fixtures();
    let server = Server::start(f.tree_a.clone());
    let size = f.tree_a[&image_path()].len();
    // Dropped twice (once right after the headers), then complete.
    server.fault(&image_path(), &[Fault::Cut(size / 2), Fault::Cut(0)]);
    let cache = tempfile::tempdir().unwrap();
    let o = options(&server, cache.path(), &f.key_a, VERSION);
    release::fetch_release(&o).unwrap();
    let reqs = server.requests_for(&image_path());
    assert_eq!(reqs.len(), 3, "{reqs:?}");
    assert_eq!(reqs[2].range, Some(format!("bytes={}-", size / 2)));
}

#[test]
fn always_dropped_gives_up() {
    let f = fixtures();
    let server = Server::start(f.tree_a.clone());
    server.always(&image_path(), Fault::Cut(1000));
    let cache = tempfile::tempdir().unwrap();
    let o = options(&server, cache.path(), &f.key_a, VERSION);
    let e = release::fetch_release(&o).unwrap_err();
    match &e {
        Error::Download(DownloadError::GaveUp { attempts: 4, .. }) => {}
        other => panic!("unexpected {other:?}"),
    }
    assert!(e.to_string().contains("gave up after 4 attempts"), "{e}");
    assert_no_image(cache.path());
    // Each attempt resumed where the last one broke off.
    let reqs = server.requests_for(&image_path());
    assert_eq!(reqs.len(), 4);
    assert_eq!(reqs[3].range, Some("bytes=3000-".to_string()));
}

#[test]
fn server_without_range_support_restarts_cleanly() {
    let f = fixtures();
    let server = Server::start(f.tree_a.clone());
    let size = f.tree_a[&image_path()].len();
    server.fault(&image_path(), &[Fault::Cut(size / 4), Fault::IgnoreRange]);
    let cache = tempfile::tempdir().unwrap();
    let o = options(&server, cache.path(), &f.key_a, VERSION);
    let r = release::fetch_release(&o).unwrap();
    let reqs = server.requests_for(&image_path());
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert!(reqs[1].range.is_some());
    assert_eq!(reqs[1].status, 200);
    assert_eq!(
        support::sha256(&std::fs::read(&r.image).unwrap()),
        support::sha256(&f.image)
    );
}

#[test]
fn changed_file_restarts_download() {
    let f = fixtures();
    let server = Server::start(f.tree_a.clone());
    let size = f.tree_a[&image_path()].len();
    // First attempt of a different (older) file breaks off; the server then has the
    // real one, so If-Range fails and the server answers 200 with the whole file.
    let real = f.tree_a[&image_path()].clone();
    let mut old = real.clone();
    old[10] ^= 1;
    server.set(&image_path(), old);
    server.fault(&image_path(), &[Fault::Cut(size / 2)]);
    let cache = tempfile::tempdir().unwrap();
    let o = options(&server, cache.path(), &f.key_a, VERSION);
    let dir = release_dir(cache.path());
    std::fs::create_dir_all(&dir).unwrap();
    // Let the first attempt run alone by fetching the file with a one-attempt downloader.
    let dl = release::Downloader::new(release::DownloadOptions {
        retry: RetryPolicy {
            attempts: 1,
            ..RetryPolicy::default()
        },
        progress: ProgressMode::Quiet,
        ..release::DownloadOptions::default()
    })
    .unwrap();
    let staging = dir.join(format!("{IMAGE_BZ2}.unverified"));
    let e = dl
        .download(&format!("{}{}", server.url(), image_path()), &staging)
        .unwrap_err();
    assert!(matches!(e, DownloadError::GaveUp { .. }), "{e:?}");
    assert!(!staging.exists());
    server.set(&image_path(), real);
    let r = release::fetch_release(&o).unwrap();
    let reqs = server.requests_for(&image_path());
    assert_eq!(reqs.last().unwrap().status, 200, "{reqs:?}");
    assert_eq!(
        support::sha256(&std::fs::read(&r.image).unwrap()),
        support::sha256(&f.image)
    );
}

#[test]
fn service_unavailable_then_success() {
    let f = fixtures();
    let server = Server::start(f.tree_a.clone());
    server.fault(&image_path(), &[Fault::Status(503), Fault::Status(429)]);
    server.fault(&format!("{DIR}/{VERSION_TXT}"), &[Fault::Status(500)]);
    let cache = tempfile::tempdir().unwrap();
    let o = options(&server, cache.path(), &f.key_a, VERSION);
    release::fetch_release(&o).unwrap();
    let statuses: Vec<u16> = server
        .requests_for(&image_path())
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, vec![503, 429, 200]);
}

#[test]
fn forbidden_is_not_retried() {
    let f = fixtures();
    let server = Server::start(f.tree_a.clone());
    server.always(&image_path(), Fault::Status(403));
    let cache = tempfile::tempdir().unwrap();
    let o = options(&server, cache.path(), &f.key_a, VERSION);
    let e = release::fetch_release(&o).unwrap_err();
    assert!(
        matches!(e, Error::Download(DownloadError::Http { status: 403, .. })),
        "{e:?}"
    );
    assert_eq!(server.requests_for(&image_path()).len(), 1);
    assert_no_image(cache.path());
}

#[test]
fn release_file_is_verified() {
    let f = fixtures();
    let server = Server::start(f.tree_a.clone());
    let cache = tempfile::tempdir().unwrap();
    let o = options(&server, cache.path(), &f.key_a, VERSION);
    let rel = release::resolve(&o).unwrap();
    let p = release::fetch_release_file(&o, &rel, "oem-qemu.raw").unwrap();
    assert_eq!(p, release_dir(cache.path()).join("oem-qemu.raw"));
    assert_eq!(
        std::fs::read(&p).unwrap(),
        f.tree_a[&format!("{DIR}/oem-qemu.raw")]
    );
    server.set(&format!("{DIR}/oem-qemu.raw"), b"evil".to_vec());
    std::fs::remove_file(&p).unwrap();
    let e = release::fetch_release_file(&o, &rel, "oem-qemu.raw").unwrap_err();
    assert!(
        matches!(e, Error::Verify(VerifyError::BadSignature { .. })),
        "{e:?}"
    );
    assert!(!p.exists());
    let e = release::fetch_release_file(&o, &rel, "../x").unwrap_err();
    assert!(matches!(e, Error::BadName(_)));
}

#[test]
fn extensions_checked_against_sha256sums() {
    let f = fixtures();
    let server = Server::start(f.tree_a.clone());
    let cache = tempfile::tempdir().unwrap();
    let o = options(&server, cache.path(), &f.key_a, VERSION);
    let ext = release::fetch_extension(&o, "test", "test-1.0-x86-64.raw").unwrap();
    assert_eq!(std::fs::read(&ext.raw).unwrap(), f.ext_raw);
    assert_eq!(ext.sha256, support::sha256(&f.ext_raw));
    let conf = ext.conf.unwrap();
    assert!(std::fs::read_to_string(conf)
        .unwrap()
        .contains("[Transfer]"));

    // Cached: only SHA256SUMS and the conf are fetched again.
    server.clear_log();
    release::fetch_extension(&o, "test", "test-1.0-x86-64.raw").unwrap();
    assert!(server
        .requests_for("/extensions/test-1.0-x86-64.raw")
        .is_empty());

    let ext = release::fetch_extension(&o, "noconf", "noconf-2.0-x86-64.raw").unwrap();
    assert_eq!(ext.conf, None);

    let e = release::fetch_extension(&o, "bad", "bad-1.0-x86-64.raw").unwrap_err();
    assert!(
        matches!(e, Error::Verify(VerifyError::ChecksumMismatch { .. })),
        "{e:?}"
    );
    assert!(!cache.path().join("extensions/bad-1.0-x86-64.raw").exists());

    let e = release::fetch_extension(&o, "missing", "missing-1.0-x86-64.raw").unwrap_err();
    assert!(
        matches!(e, Error::Verify(VerifyError::NoChecksum { .. })),
        "{e:?}"
    );
    assert!(e
        .to_string()
        .contains("SHA256SUMS: no SHA256 checksum for missing-1.0-x86-64.raw"));
    assert!(server
        .requests_for("/extensions/missing-1.0-x86-64.raw")
        .is_empty());
    assert!(!cache
        .path()
        .join("extensions/missing-1.0-x86-64.raw")
        .exists());
}
