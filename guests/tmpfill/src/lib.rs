//! Tries every way to fill `/tmp` past its quota, or to leave it: big and sparse files, writes
//! through streams and at offsets, many files, unlinked-but-open files, renames, links, symlinks.
//! Each route answers with what happened, `ok` or the error kind the guest saw.

use std::fs::{File, OpenOptions};
use std::io::Write as _;

use wasip2::filesystem::types::{Descriptor, DescriptorFlags, OpenFlags, PathFlags};
use wasip2::http::types::{IncomingRequest, ResponseOutparam};

struct TmpFill;

fn kind<T>(result: std::io::Result<T>) -> String {
    match result {
        Ok(_) => "ok".into(),
        Err(e) => format!("{:?}", e.kind()),
    }
}

/// Writes `bytes` to `file` in 1 MiB chunks; says how much went in and how it ended.
fn fill(file: &mut File, bytes: u64) -> String {
    let chunk = vec![b'x'; 1 << 20];
    let mut written = 0;
    while written < bytes {
        let n = chunk.len().min((bytes - written) as usize);
        if let Err(e) = file.write_all(&chunk[..n]) {
            return format!("wrote {written}: {:?}", e.kind());
        }
        written += n as u64;
    }
    format!("wrote {written}: {}", kind(file.flush()))
}

/// A preopened folder as the raw WASI descriptor, for calls std does not offer (pwrite,
/// symlinks, splices).
fn preopen(name: &str) -> Descriptor {
    wasip2::filesystem::preopens::get_directories()
        .into_iter()
        .find(|(_, path)| path == name)
        .expect("the folder is preopened")
        .0
}

fn tmp_dir() -> Descriptor {
    preopen("/tmp")
}

fn code<T>(result: Result<T, wasip2::filesystem::types::ErrorCode>) -> String {
    match result {
        Ok(_) => "ok".into(),
        Err(e) => e.name().into(),
    }
}

/// The non-blocking `write-zeroes` (the blocking one is a plain write on the host): waits for
/// room, writes `len` zeroes, flushes.
fn write_zeroes(
    stream: &wasip2::io::streams::OutputStream,
    len: u64,
) -> Result<(), wasip2::io::streams::StreamError> {
    let ready = stream.subscribe();
    while stream.check_write()? < len {
        ready.block();
    }
    stream.write_zeroes(len)?;
    stream.blocking_flush()
}

fn tmp(name: &str) -> String {
    format!("/tmp/{name}")
}

impl wasip2::exports::http::incoming_handler::Guest for TmpFill {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let q = |key: &str| kit::query(&request, key).unwrap_or_default();
        let n = |key: &str| q(key).parse::<u64>().unwrap_or(0);
        let pwq = kit::path_with_query(&request);
        let route = pwq.split('?').next().unwrap_or("/");
        let body = match route {
            // A file of `bytes` bytes written through a stream (what `write` does).
            "/fill" => match File::create(tmp(&q("name"))) {
                Ok(mut file) => fill(&mut file, n("bytes")),
                Err(e) => format!("create: {:?}", e.kind()),
            },
            // `bytes` more at the end of a file, through an appending stream.
            "/append" => match OpenOptions::new().append(true).create(true).open(tmp(&q("name"))) {
                Ok(mut file) => fill(&mut file, n("bytes")),
                Err(e) => format!("open: {:?}", e.kind()),
            },
            // `bytes` bytes at `offset`, through the descriptor (pwrite).
            "/pwrite" => {
                let flags = DescriptorFlags::WRITE;
                match tmp_dir().open_at(PathFlags::empty(), &q("name"), OpenFlags::CREATE, flags) {
                    Ok(file) => code(file.write(&vec![b'x'; n("bytes") as usize], n("offset"))),
                    Err(e) => format!("open: {e:?}"),
                }
            }
            // A sparse file: its size set without writing.
            "/sparse" => {
                let file = OpenOptions::new().write(true).create(true).truncate(false).open(tmp(&q("name")));
                match file {
                    Ok(file) => kind(file.set_len(n("len"))),
                    Err(e) => format!("open: {:?}", e.kind()),
                }
            }
            // Empty files (or folders with `dirs=1`) until something says no.
            "/count" => {
                let mut made = 0;
                let end = loop {
                    if made == n("n") {
                        break "ok".to_string();
                    }
                    let path = tmp(&format!("{}{made}", q("prefix")));
                    let result = if q("dirs") == "1" {
                        std::fs::create_dir(&path)
                    } else {
                        File::create(&path).map(drop)
                    };
                    if let Err(e) = result {
                        break format!("{:?}", e.kind());
                    }
                    made += 1;
                };
                format!("made {made}: {end}")
            }
            // Writes `bytes` to a file, unlinks it while still open, then writes `bytes` to
            // another file, before and after closing the first.
            "/orphan" => {
                let bytes = n("bytes");
                let mut first = match File::create(tmp("orphan")) {
                    Ok(file) => file,
                    Err(e) => return kit::text(out, &format!("create: {:?}", e.kind())),
                };
                let wrote = fill(&mut first, bytes);
                let unlinked = kind(std::fs::remove_file(tmp("orphan")));
                let open = kind(std::fs::write(tmp("second"), vec![b'y'; bytes as usize]));
                drop(first);
                let closed = kind(std::fs::write(tmp("second"), vec![b'y'; bytes as usize]));
                format!("{wrote}; unlink: {unlinked}; while open: {open}; after close: {closed}")
            }
            // Like `/fill`, with raw WASI calls in 4 KiB steps: the error code the host gave.
            // `how` is how each step writes: `write` (default), `zeroes` (the non-blocking write-zeroes), or
            // `splice` (from the bundled `/zeros.bin`, read through a stream).
            "/rawfill" => {
                let flags = DescriptorFlags::WRITE;
                let opened = tmp_dir().open_at(PathFlags::empty(), &q("name"), OpenFlags::CREATE, flags);
                let stream = match opened.and_then(|file| file.write_via_stream(0)) {
                    Ok(stream) => stream,
                    Err(e) => return kit::text(out, &format!("open: {}", e.name())),
                };
                let source = (q("how") == "splice").then(|| {
                    let zeros = preopen("/")
                        .open_at(PathFlags::empty(), "zeros.bin", OpenFlags::empty(), DescriptorFlags::READ)
                        .expect("the bundled zeros.bin");
                    zeros.read_via_stream(0).expect("a read stream")
                });
                let chunk = vec![b'x'; 4096];
                let mut written = 0u64;
                loop {
                    if written >= n("bytes") { break format!("wrote {written}: ok"); }
                    let step = match (q("how").as_str(), &source) {
                        ("zeroes", _) => write_zeroes(&stream, 4096).map(|()| 4096),
                        (_, Some(source)) => stream.blocking_splice(source, 4096),
                        _ => stream.blocking_write_and_flush(&chunk).map(|()| 4096),
                    };
                    match step {
                        Ok(0) => break format!("wrote {written}: source ended"),
                        Ok(n) => written += n,
                        Err(wasip2::io::streams::StreamError::LastOperationFailed(e)) => {
                            let code = wasip2::filesystem::types::filesystem_error_code(&e);
                            break format!("wrote {written}: {}", code.map_or("unknown", |c| c.name()));
                        }
                        Err(e) => break format!("wrote {written}: {e:?}"),
                    }
                }
            }
            "/rm" => kind(std::fs::remove_file(tmp(&q("name")))),
            "/rmdir" => kind(std::fs::remove_dir(tmp(&q("name")))),
            "/rename" => kind(std::fs::rename(tmp(&q("from")), tmp(&q("to")))),
            "/link" => kind(std::fs::hard_link(tmp(&q("from")), tmp(&q("to")))),
            "/symlink" => code(tmp_dir().symlink_at(&q("target"), &q("name"))),
            "/read" => match std::fs::read(tmp(&q("name"))) {
                Ok(data) => format!("{} bytes", data.len()),
                Err(e) => format!("{:?}", e.kind()),
            },
            _ => "routes: /fill /rawfill /append /pwrite /sparse /count /orphan /rm /rmdir /rename /link /symlink /read".into(),
        };
        kit::text(out, &body);
    }
}

wasip2::http::proxy::export!(TmpFill);
