//! TLS at the front door of `micros server`: the certificates, read from PEM files and chosen by
//! the name a client asks for (SNI), and reloaded without a restart when their files change. A
//! handshake offers HTTP/2 and HTTP/1.1 by ALPN; `accept` serves whichever the client took.
//!
//! The default pair (`--tls-cert`, `--tls-key`) is served for every name without one of its own:
//! the server's domain and `<app>.<domain>`, so it is a certificate for both `DOMAIN` and
//! `*.DOMAIN`. Other names (custom domains) have their own in the folder `--tls-dir`:
//! `<host>.crt` with `<host>.key`, or `<host>.pem` holding both. A file missing or unusable at
//! start is an error naming it and its flag; one that goes bad later is logged, and the
//! certificate served before it stays.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode, Watcher as _};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject as _};
use rustls::pki_types::{CertificateDer, DnsName, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sha2::{Digest as _, Sha256};
use tokio_rustls::TlsAcceptor;

/// The protocols a handshake offers by ALPN, preferred first. A client that offers neither (or
/// no ALPN at all) is served HTTP/1.1.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// How long the certificate files must stay quiet before they are read again: a renewal writes
/// the chain and the key one after the other (or swaps their links one by one), and a pair read
/// between the two would not match. Short, so that a renewal is served within a second.
pub const RELOAD_SETTLE: Duration = Duration::from_millis(500);

/// The flag of the default certificate chain.
const CERT_FLAG: &str = "--tls-cert";
/// The flag of the default private key.
const KEY_FLAG: &str = "--tls-key";
/// The flag of the folder of certificates per host.
const DIR_FLAG: &str = "--tls-dir";

/// Where a server's certificates are: PEM files, read at start and again whenever they change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// The certificate chain (PEM, the server's certificate first, then its intermediates)
    /// served for every name without one of its own: the domain and `<app>.<domain>`, so one
    /// for both `DOMAIN` and `*.DOMAIN` (`--tls-cert`).
    pub cert: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1; RSA, ECDSA or Ed25519) (`--tls-key`).
    pub key: PathBuf,
    /// A folder of certificates for other names, custom domains (`--tls-dir`): `<host>.crt`
    /// with `<host>.key`, or `<host>.pem` holding the chain and the key.
    pub dir: Option<PathBuf>,
}

impl TlsConfig {
    /// The default pair, and no folder of certificates per host.
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        Self {
            cert: cert.into(),
            key: key.into(),
            dir: None,
        }
    }
}

/// Where one certificate chain and its key are read from, and the flags that named them (for
/// the messages).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Source {
    /// The certificate chain's file.
    cert: PathBuf,
    /// The key's file (the chain's own, for a `<host>.pem`).
    key: PathBuf,
    /// The flag that named the chain's file.
    cert_flag: &'static str,
    /// The flag that named the key's file.
    key_flag: &'static str,
}

/// A certificate with its key as served, and the digest of the bytes it was read from: reading
/// the same bytes again changes nothing.
#[derive(Debug, Clone)]
struct Loaded {
    /// The chain and the key, as handshakes use them.
    key: Arc<CertifiedKey>,
    /// SHA-256 of the files' bytes.
    digest: [u8; 32],
}

/// Every certificate served at one time.
#[derive(Debug)]
struct Certificates {
    /// For every name without one of its own.
    default: Loaded,
    /// By host name, lower case.
    hosts: HashMap<String, Loaded>,
}

impl Certificates {
    /// The certificate for a client that asked for `name` (or for none).
    fn choose(&self, name: Option<&str>) -> Arc<CertifiedKey> {
        let own = name.and_then(|name| {
            let name = name.trim_end_matches('.');
            match self.hosts.get(name) {
                Some(loaded) => Some(loaded),
                None => self.hosts.get(&name.to_ascii_lowercase()),
            }
        });
        Arc::clone(&own.unwrap_or(&self.default).key)
    }
}

/// Chooses each handshake's certificate by SNI among those served now, which a reload swaps
/// at once: a handshake under way keeps the one it was given.
#[derive(Debug)]
struct Resolver {
    /// What is served now.
    current: RwLock<Arc<Certificates>>,
}

impl Resolver {
    /// The certificates served now.
    fn current(&self) -> Arc<Certificates> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current().choose(hello.server_name()))
    }
}

/// What a reload did: the certificates it swapped in or dropped, and the files it could not
/// use (whose certificates served before stay).
#[derive(Debug, Default)]
pub(crate) struct Reload {
    /// A line per certificate swapped in.
    pub(crate) changed: Vec<String>,
    /// Hosts whose files are gone: the default certificate is theirs now.
    pub(crate) removed: Vec<String>,
    /// A line per file that could not be used, naming it, its flag and what stays.
    pub(crate) problems: Vec<String>,
}

/// The front door's TLS: the acceptor every handshake goes through, and the certificates it
/// serves.
#[derive(Clone)]
pub(crate) struct Tls {
    /// Where the files are.
    config: TlsConfig,
    /// The cryptography keys are loaded with (ring's).
    provider: Arc<CryptoProvider>,
    /// The certificates served now, which a reload swaps.
    resolver: Arc<Resolver>,
    /// What handshakes go through: the resolver, and the protocols of [`ALPN`].
    acceptor: TlsAcceptor,
}

impl Tls {
    /// Reads every certificate of `config`. A file missing or unusable is an error naming it
    /// and its flag.
    pub(crate) fn load(config: &TlsConfig) -> anyhow::Result<Self> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let (default, _) = load_pair(&default_source(config), &provider, None)?;
        let mut hosts = HashMap::new();
        if let Some(dir) = &config.dir {
            let scan = scan_dir(dir)?;
            if let Some(problem) = scan.problems.into_iter().next() {
                return Err(problem);
            }
            for (host, source) in scan.found {
                let (loaded, _) = load_pair(&source?, &provider, None)?;
                hosts.insert(host, loaded);
            }
        }
        let resolver = Arc::new(Resolver {
            current: RwLock::new(Arc::new(Certificates { default, hosts })),
        });
        let mut server = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .context("the TLS library refused its own default protocol versions")?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&resolver) as Arc<dyn ResolvesServerCert>);
        server.alpn_protocols = ALPN.iter().map(|protocol| protocol.to_vec()).collect();
        Ok(Self {
            config: config.clone(),
            provider,
            resolver,
            acceptor: TlsAcceptor::from(Arc::new(server)),
        })
    }

    /// What every handshake goes through.
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.clone()
    }

    /// The host names with a certificate of their own, lower case, sorted.
    pub(crate) fn hosts(&self) -> Vec<String> {
        let mut hosts: Vec<String> = self.resolver.current().hosts.keys().cloned().collect();
        hosts.sort();
        hosts
    }

    /// Reads every file again and swaps in, at once, the certificates whose bytes changed and
    /// can be used; a file that cannot be used is logged and leaves the certificate served before
    /// it in place. Says what it did, as it logs.
    pub(crate) fn reload(&self) -> Reload {
        let mut report = Reload::default();
        let current = self.resolver.current();
        let default = match load_pair(
            &default_source(&self.config),
            &self.provider,
            Some(&current.default),
        ) {
            Ok((loaded, changed)) => {
                if changed {
                    report.changed.push(format!(
                        "the default certificate, from `{}`",
                        self.config.cert.display()
                    ));
                }
                loaded
            }
            Err(error) => {
                report.problems.push(format!(
                    "{error:#}; the default certificate served before stays"
                ));
                current.default.clone()
            }
        };
        let mut hosts = HashMap::new();
        match self.config.dir.as_deref().map(scan_dir).transpose() {
            Ok(None) => {}
            Err(error) => {
                report
                    .problems
                    .push(format!("{error:#}; the certificates served before stay"));
                hosts.clone_from(&current.hosts);
            }
            Ok(Some(scan)) => {
                report
                    .problems
                    .extend(scan.problems.iter().map(|problem| format!("{problem:#}")));
                for (host, source) in scan.found {
                    let previous = current.hosts.get(&host);
                    match source.and_then(|source| load_pair(&source, &self.provider, previous)) {
                        Ok((loaded, changed)) => {
                            if changed {
                                report.changed.push(format!("`{host}`"));
                            }
                            hosts.insert(host, loaded);
                        }
                        Err(error) => {
                            let stays = match previous {
                                Some(previous) => {
                                    hosts.insert(host.clone(), previous.clone());
                                    format!("`{host}` keeps the certificate served before")
                                }
                                None => format!("`{host}` is served the default certificate"),
                            };
                            report.problems.push(format!("{error:#}; {stays}"));
                        }
                    }
                }
                report.removed = current
                    .hosts
                    .keys()
                    .filter(|host| !hosts.contains_key(*host))
                    .cloned()
                    .collect();
                report.removed.sort();
            }
        }
        if !report.changed.is_empty() || !report.removed.is_empty() {
            *self
                .resolver
                .current
                .write()
                .unwrap_or_else(PoisonError::into_inner) =
                Arc::new(Certificates { default, hosts });
        }
        for changed in &report.changed {
            tracing::info!("TLS: serving a new certificate for {changed}");
        }
        for host in &report.removed {
            tracing::info!(
                "TLS: the files of `{host}` are gone from {DIR_FLAG}; it is served the default \
                 certificate"
            );
        }
        for problem in &report.problems {
            tracing::error!(error.type = "tls_reload", "TLS: {problem}");
        }
        report
    }

    /// The folders whose changes may change a certificate: those of the files and of their
    /// links' targets, and `--tls-dir`.
    fn folders(&self) -> BTreeSet<PathBuf> {
        let mut sources = vec![default_source(&self.config)];
        let mut folders = BTreeSet::new();
        if let Some(dir) = &self.config.dir {
            folders.insert(dir.clone());
            if let Ok(scan) = scan_dir(dir) {
                sources.extend(scan.found.into_values().flatten());
            }
        }
        for source in sources {
            for file in [&source.cert, &source.key] {
                let parent = folder_of(file);
                if let Ok(target) = std::fs::read_link(file) {
                    folders.insert(folder_of(&parent.join(target)));
                }
                if let Ok(canonical) = file.canonicalize() {
                    folders.insert(folder_of(&canonical));
                }
                folders.insert(parent);
            }
        }
        folders
    }

    /// Starts watching the certificate files: returns the loop that reloads them (see
    /// [`Tls::reload`]) once they have settled after a change ([`RELOAD_SETTLE`]), to be spawned
    /// beside the server. Fails at once if their folders cannot be watched, so that a renewal is
    /// never silently missed.
    pub(crate) fn watch(&self) -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
        let (events, mut received) = tokio::sync::mpsc::unbounded_channel();
        let mut watcher = notify::recommended_watcher(move |event| {
            let _ = events.send(event);
        })
        .context("cannot watch the TLS certificate files")?;
        let mut watched = BTreeSet::new();
        for folder in self.folders() {
            watch_folder(&mut watcher, &folder)?;
            watched.insert(folder);
        }
        let tls = self.clone();
        Ok(async move {
            loop {
                // Wait for a change, then for the files to settle.
                loop {
                    match received.recv().await {
                        None => return,
                        Some(Ok(event)) if changes(&event) => break,
                        Some(Ok(_)) => {}
                        Some(Err(error)) => tracing::warn!("TLS: watching the files: {error}"),
                    }
                }
                loop {
                    match tokio::time::timeout(RELOAD_SETTLE, received.recv()).await {
                        Err(_) => break,
                        Ok(None) => return,
                        Ok(Some(_)) => {}
                    }
                }
                let reloading = tls.clone();
                match tokio::task::spawn_blocking(move || {
                    reloading.reload();
                    reloading.folders()
                })
                .await
                {
                    // A host added to the folder may link to files elsewhere: watch there too.
                    Ok(folders) => {
                        for folder in folders {
                            if !watched.contains(&folder) {
                                match watch_folder(&mut watcher, &folder) {
                                    Ok(()) => {
                                        watched.insert(folder);
                                    }
                                    Err(error) => tracing::warn!("TLS: {error:#}"),
                                }
                            }
                        }
                    }
                    Err(error) => tracing::error!("TLS: reloading the certificates: {error}"),
                }
            }
        })
    }
}

/// Whether a file event may have changed a file's bytes (opening or reading one does not).
fn changes(event: &notify::Event) -> bool {
    match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// Watches one folder, not its subfolders.
fn watch_folder(watcher: &mut notify::RecommendedWatcher, folder: &Path) -> anyhow::Result<()> {
    watcher
        .watch(folder, RecursiveMode::NonRecursive)
        .with_context(|| {
            format!(
                "cannot watch `{}` for renewed certificates (on Linux, raising \
                 `fs.inotify.max_user_watches` may help)",
                folder.display()
            )
        })
}

/// The folder a file is in (`.` for a bare file name).
fn folder_of(file: &Path) -> PathBuf {
    match file.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The default pair's files.
fn default_source(config: &TlsConfig) -> Source {
    Source {
        cert: config.cert.clone(),
        key: config.key.clone(),
        cert_flag: CERT_FLAG,
        key_flag: KEY_FLAG,
    }
}

/// What a look at `--tls-dir` found: each host's files (or why they cannot be paired), and the
/// files named after no host.
struct Scan {
    /// By host name, lower case: its files, or why they cannot be paired.
    found: BTreeMap<String, anyhow::Result<Source>>,
    /// Files whose names are no host's.
    problems: Vec<anyhow::Error>,
}

/// The certificates in `dir`, by host: `<host>.crt` with `<host>.key`, or `<host>.pem`. Hidden
/// files, folders and other files are passed over. `Err` if the folder cannot be read.
fn scan_dir(dir: &Path) -> anyhow::Result<Scan> {
    let entries = std::fs::read_dir(dir).with_context(|| {
        format!(
            "{DIR_FLAG} `{}`: cannot read the folder: give a folder of `<host>.crt` and \
             `<host>.key` (or `<host>.pem`) files",
            dir.display()
        )
    })?;
    // By host: its `.crt`, `.key` and `.pem` files.
    let mut files: BTreeMap<String, [Option<PathBuf>; 3]> = BTreeMap::new();
    let mut problems = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || entry.path().is_dir() {
            continue;
        }
        let Some((host, kind)) = [".crt", ".key", ".pem"]
            .iter()
            .enumerate()
            .find_map(|(kind, suffix)| Some((name.strip_suffix(suffix)?, kind)))
        else {
            tracing::debug!("{DIR_FLAG}: `{name}` is not a certificate file; passed over");
            continue;
        };
        if DnsName::try_from(host).is_err() {
            problems.push(anyhow!(
                "{DIR_FLAG} `{}`: `{host}` is not a host name: name each file after the host \
                 it serves, e.g. `notes.example.org.crt`",
                entry.path().display()
            ));
            continue;
        }
        files.entry(host.to_ascii_lowercase()).or_default()[kind] = Some(entry.path());
    }
    let found = files
        .into_iter()
        .map(|(host, [crt, key, pem])| {
            let source = match (crt, key, pem) {
                (Some(cert), Some(key), None) => Ok(Source {
                    cert,
                    key,
                    cert_flag: DIR_FLAG,
                    key_flag: DIR_FLAG,
                }),
                (None, None, Some(pem)) => Ok(Source {
                    cert: pem.clone(),
                    key: pem,
                    cert_flag: DIR_FLAG,
                    key_flag: DIR_FLAG,
                }),
                (Some(cert), None, None) => Err(anyhow!(
                    "{DIR_FLAG} `{}` has no key beside it: add `{host}.key`",
                    cert.display()
                )),
                (None, Some(key), None) => Err(anyhow!(
                    "{DIR_FLAG} `{}` has no certificate beside it: add `{host}.crt`",
                    key.display()
                )),
                (_, _, pem) => Err(anyhow!(
                    "{DIR_FLAG} `{}`: `{host}` has both a `.pem` and a `.crt`/`.key` pair: \
                     keep one",
                    pem.unwrap_or_default().display()
                )),
            };
            (host, source)
        })
        .collect();
    Ok(Scan { found, problems })
}

/// Reads a certificate chain and its key; `changed` is false (and the certificate the one of
/// `previous`) if the bytes are those `previous` was read from. An error names the file, its
/// flag and the fix.
fn load_pair(
    source: &Source,
    provider: &CryptoProvider,
    previous: Option<&Loaded>,
) -> anyhow::Result<(Loaded, bool)> {
    let read = |path: &Path, flag: &str, what: &str| {
        std::fs::read(path).map_err(|error| {
            anyhow!(
                "{flag} `{}`: cannot read it ({error}): give the PEM file of {what}",
                path.display()
            )
        })
    };
    let cert_bytes = read(&source.cert, source.cert_flag, "the certificate chain")?;
    let key_bytes = if source.key == source.cert {
        cert_bytes.clone()
    } else {
        read(&source.key, source.key_flag, "its private key")?
    };
    let mut hash = Sha256::new();
    hash.update((cert_bytes.len() as u64).to_le_bytes());
    hash.update(&cert_bytes);
    hash.update(&key_bytes);
    let digest: [u8; 32] = hash.finalize().into();
    if let Some(previous) = previous
        && previous.digest == digest
    {
        return Ok((previous.clone(), false));
    }
    let cert = source.cert.display();
    let chain = CertificateDer::pem_slice_iter(&cert_bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| {
            anyhow!(
                "{} `{cert}`: not a PEM certificate chain ({error}): give the certificate, then \
                 its intermediates, each as `-----BEGIN CERTIFICATE-----`",
                source.cert_flag
            )
        })?;
    if chain.is_empty() {
        return Err(anyhow!(
            "{} `{cert}` holds no certificate: give the certificate chain in PEM \
             (`-----BEGIN CERTIFICATE-----`)",
            source.cert_flag
        ));
    }
    let key_path = source.key.display();
    let key = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|error| match error {
        pem::Error::NoItemsFound => anyhow!(
            "{} `{key_path}` holds no private key: give the certificate's key in PEM \
             (`-----BEGIN PRIVATE KEY-----`, or its RSA or EC form)",
            source.key_flag
        ),
        error => anyhow!(
            "{} `{key_path}`: not a PEM private key ({error}): give the certificate's key in PEM",
            source.key_flag
        ),
    })?;
    let key = CertifiedKey::from_der(chain, key, provider).map_err(|error| match error {
        rustls::Error::InconsistentKeys(_) => anyhow!(
            "{} `{key_path}` is not the key of the certificate in `{cert}`: give the key the \
             certificate was made for",
            source.key_flag
        ),
        rustls::Error::InvalidCertificate(error) => anyhow!(
            "{} `{cert}`: the certificate cannot be read ({error}): give an X.509 certificate \
             in PEM",
            source.cert_flag
        ),
        error => anyhow!(
            "{} `{key_path}`: the key cannot be used ({error}): give an RSA, ECDSA (P-256, \
             P-384) or Ed25519 key",
            source.key_flag
        ),
    })?;
    Ok((
        Loaded {
            key: Arc::new(key),
            digest,
        },
        true,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate for `names`: its chain's PEM, its key's PEM, its DER.
    fn certificate(names: &[&str]) -> (String, String, Vec<u8>) {
        let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        let made = rcgen::generate_simple_self_signed(names).unwrap();
        (
            made.cert.pem(),
            made.signing_key.serialize_pem(),
            made.cert.der().to_vec(),
        )
    }

    /// Writes a certificate and its key as `cert.pem` and `key.pem` in `dir`.
    fn write_default(dir: &Path) -> (TlsConfig, Vec<u8>) {
        let (cert, key, der) = certificate(&["localhost", "*.localhost"]);
        std::fs::write(dir.join("cert.pem"), cert).unwrap();
        std::fs::write(dir.join("key.pem"), key).unwrap();
        (
            TlsConfig::new(dir.join("cert.pem"), dir.join("key.pem")),
            der,
        )
    }

    fn error(config: &TlsConfig) -> String {
        match Tls::load(config) {
            Ok(_) => panic!("loaded"),
            Err(error) => format!("{error:#}"),
        }
    }

    /// The certificate a client asking for `name` is given.
    fn served(tls: &Tls, name: Option<&str>) -> Vec<u8> {
        tls.resolver.current().choose(name).cert[0].to_vec()
    }

    #[test]
    fn a_missing_file_is_named_with_its_flag() {
        let dir = tempfile::tempdir().unwrap();
        let (config, _) = write_default(dir.path());
        let missing = TlsConfig::new(dir.path().join("nope.pem"), &config.key);
        let message = error(&missing);
        assert!(message.starts_with("--tls-cert `"), "{message}");
        assert!(message.contains("nope.pem`: cannot read it"), "{message}");
        let missing = TlsConfig::new(&config.cert, dir.path().join("nokey.pem"));
        let message = error(&missing);
        assert!(message.starts_with("--tls-key `"), "{message}");
        assert!(message.contains("nokey.pem`"), "{message}");
    }

    #[test]
    fn a_file_that_is_not_pem_is_named_with_its_flag() {
        let dir = tempfile::tempdir().unwrap();
        let (config, _) = write_default(dir.path());
        let text = dir.path().join("text.pem");
        std::fs::write(&text, "not a certificate\n").unwrap();
        let message = error(&TlsConfig::new(&text, &config.key));
        assert!(
            message.starts_with("--tls-cert `") && message.contains("holds no certificate"),
            "{message}"
        );
        let message = error(&TlsConfig::new(&config.cert, &text));
        assert!(
            message.starts_with("--tls-key `") && message.contains("holds no private key"),
            "{message}"
        );
        let broken = dir.path().join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let message = error(&TlsConfig::new(&broken, &config.key));
        assert!(
            message.contains("broken.pem`: not a PEM certificate chain"),
            "{message}"
        );
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (config, _) = write_default(dir.path());
        let (_, other_key, _) = certificate(&["localhost"]);
        let other = dir.path().join("other.key");
        std::fs::write(&other, other_key).unwrap();
        let message = error(&TlsConfig::new(&config.cert, &other));
        assert!(
            message.starts_with("--tls-key `")
                && message.contains("other.key` is not the key of the certificate in `")
                && message.contains("cert.pem`"),
            "{message}"
        );
    }

    #[test]
    fn the_folder_pairs_files_by_host_and_names_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let (mut config, _) = write_default(dir.path());
        let hosts = dir.path().join("hosts");
        std::fs::create_dir(&hosts).unwrap();
        config.dir = Some(hosts.clone());
        let (cert, _, _) = certificate(&["notes.example.org"]);
        std::fs::write(hosts.join("notes.example.org.crt"), &cert).unwrap();
        let message = error(&config);
        assert!(
            message.starts_with("--tls-dir `")
                && message.contains("notes.example.org.crt` has no key beside it"),
            "{message}"
        );
        std::fs::write(hosts.join("bad name!.pem"), &cert).unwrap();
        std::fs::remove_file(hosts.join("notes.example.org.crt")).unwrap();
        let message = error(&config);
        assert!(message.contains("is not a host name"), "{message}");
        let config = TlsConfig {
            dir: Some(dir.path().join("absent")),
            ..config
        };
        let message = error(&config);
        assert!(
            message.starts_with("--tls-dir `") && message.contains("cannot read the folder"),
            "{message}"
        );
    }

    #[test]
    fn sni_chooses_a_host_s_own_certificate_and_the_default_for_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let (mut config, default) = write_default(dir.path());
        let hosts = dir.path().join("hosts");
        std::fs::create_dir(&hosts).unwrap();
        config.dir = Some(hosts.clone());
        let (cert, key, notes) = certificate(&["notes.example.org"]);
        std::fs::write(hosts.join("notes.example.org.pem"), format!("{cert}{key}")).unwrap();
        let (cert, key, blog) = certificate(&["blog.example.org"]);
        std::fs::write(hosts.join("Blog.Example.org.crt"), cert).unwrap();
        std::fs::write(hosts.join("Blog.Example.org.key"), key).unwrap();
        std::fs::write(hosts.join("README.txt"), "passed over").unwrap();
        let tls = Tls::load(&config).unwrap();
        assert_eq!(tls.hosts(), ["blog.example.org", "notes.example.org"]);
        assert_eq!(served(&tls, Some("notes.example.org")), notes);
        assert_eq!(served(&tls, Some("NOTES.example.org.")), notes);
        assert_eq!(served(&tls, Some("blog.example.org")), blog);
        assert_eq!(served(&tls, Some("app.localhost")), default);
        assert_eq!(served(&tls, None), default);
    }

    #[test]
    fn a_reload_swaps_in_new_files_and_keeps_the_old_certificate_for_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        let (mut config, default) = write_default(dir.path());
        let hosts = dir.path().join("hosts");
        std::fs::create_dir(&hosts).unwrap();
        config.dir = Some(hosts.clone());
        let (cert, key, first) = certificate(&["notes.example.org"]);
        std::fs::write(hosts.join("notes.example.org.crt"), cert).unwrap();
        std::fs::write(hosts.join("notes.example.org.key"), key).unwrap();
        let tls = Tls::load(&config).unwrap();
        assert_eq!(served(&tls, Some("notes.example.org")), first);

        // Nothing changed: nothing to do.
        let report = tls.reload();
        assert!(
            report.changed.is_empty() && report.problems.is_empty(),
            "{report:?}"
        );

        let (cert, key, second) = certificate(&["notes.example.org"]);
        std::fs::write(hosts.join("notes.example.org.crt"), cert).unwrap();
        std::fs::write(hosts.join("notes.example.org.key"), key).unwrap();
        let report = tls.reload();
        assert_eq!(report.changed, ["`notes.example.org`"], "{report:?}");
        assert_eq!(served(&tls, Some("notes.example.org")), second);

        // A bad file is reported, naming it; the certificate served before stays.
        std::fs::write(hosts.join("notes.example.org.crt"), "garbage").unwrap();
        std::fs::write(&config.key, "garbage").unwrap();
        let report = tls.reload();
        assert!(report.changed.is_empty(), "{report:?}");
        assert_eq!(report.problems.len(), 2, "{report:?}");
        assert!(
            report.problems[0].starts_with("--tls-key `")
                && report.problems[0].contains("the default certificate served before stays"),
            "{report:?}"
        );
        assert!(
            report.problems[1].contains("notes.example.org.crt` holds no certificate")
                && report.problems[1]
                    .contains("`notes.example.org` keeps the certificate served before"),
            "{report:?}"
        );
        assert_eq!(served(&tls, Some("notes.example.org")), second);
        assert_eq!(served(&tls, None), default);

        // Files gone: the host is served the default.
        std::fs::remove_file(hosts.join("notes.example.org.crt")).unwrap();
        std::fs::remove_file(hosts.join("notes.example.org.key")).unwrap();
        let report = tls.reload();
        assert_eq!(report.removed, ["notes.example.org"], "{report:?}");
        assert_eq!(served(&tls, Some("notes.example.org")), default);
    }
}
