//! End to end on a real filesystem that fills up: `ringflow serve` on a small ext4 image
//! (loop-mounted) takes instances until its journal cannot get a new segment. The shard must
//! then refuse work with a message that names the full disk, and after the filesystem is
//! grown and the server restarted, every instance it acknowledged must be there.
//!
//! Making and mounting the image needs root, `mkfs.ext4` and loop devices. Where they are
//! missing the test says so and passes, unless `RINGFLOW_REQUIRE_LOOP_MOUNT=1` (which
//! `.ci/test` sets when it runs as root with loop devices), in which case it fails.

mod common;
use common::{ServerLog, activate_all};

use std::collections::BTreeSet;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ringflow_wire::client::Client;
use ringflow_wire::{CreateInstance, ErrorCode, Request, Resource, Response};

const BIN: &str = env!("CARGO_BIN_EXE_ringflow");
const ONE_TASK: &str = include_str!("fixtures/one-task.bpmn");

/// The filesystem's size at first: two 41 MiB segments fit, a third does not.
const IMAGE_MIB: u64 = 100;
/// Variables per instance, so that the journal fills after about 10,000 instances.
const PAD_BYTES: usize = 8 * 1024;

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    match Command::new(program).args(args).output() {
        Ok(output) if output.status.success() => Ok(()),
        Ok(output) => Err(format!(
            "{program} {args:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )),
        Err(error) => Err(format!("{program}: {error}")),
    }
}

/// A loop-mounted ext4 image, unmounted when dropped.
struct Mounted {
    image: PathBuf,
    at: PathBuf,
}

impl Mounted {
    fn make(base: &Path) -> Result<Mounted, String> {
        let image = base.join("fs.img");
        let at = base.join("mnt");
        std::fs::create_dir_all(&at).map_err(|e| e.to_string())?;
        let file = std::fs::File::create(&image).map_err(|e| e.to_string())?;
        file.set_len(IMAGE_MIB << 20).map_err(|e| e.to_string())?;
        run("mkfs.ext4", &["-q", "-F", path(&image)])?;
        let mounted = Mounted { image, at };
        mounted.mount()?;
        Ok(mounted)
    }

    fn mount(&self) -> Result<(), String> {
        run("mount", &["-o", "loop", path(&self.image), path(&self.at)])
    }

    /// Unmounts, grows the image and its filesystem to `mib`, and mounts it again.
    fn grow(&self, mib: u64) {
        run("umount", &[path(&self.at)]).expect("umount");
        run("e2fsck", &["-f", "-y", path(&self.image)]).expect("e2fsck");
        std::fs::OpenOptions::new()
            .write(true)
            .open(&self.image)
            .and_then(|file| file.set_len(mib << 20))
            .expect("grow the image");
        run("resize2fs", &[path(&self.image)]).expect("resize2fs");
        self.mount().expect("mount again");
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = run("umount", &[path(&self.at)]);
    }
}

fn path(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// A `ringflow serve` started by the test, its stderr in DATA.log.
struct Server {
    child: Child,
    /// Shard 0's address (the one it reported, for `127.0.0.1:0`).
    addr: String,
}

impl Server {
    fn start(data: &Path, addr: &str) -> Server {
        let (log, file) = ServerLog::open(&log_path(data));
        let child = Command::new(BIN)
            .arg("serve")
            .arg("--data")
            .arg(data)
            .args(["--listen", addr, "--shards", "1", "--cold-store", "none"])
            // Segments of 41 MiB (a batch may take 40), none kept spare or deleted: the
            // journal grows until the disk is full.
            .args(["--segment-mib", "41", "--spare-segments", "0"])
            .args(["--prefill-segments", "0", "--snapshot-every-records", "0"])
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start ringflow serve");
        let mut server = Server {
            child,
            addr: addr.to_string(),
        };
        if addr.ends_with(":0") {
            server.addr = log.listen_addr(&mut server.child);
        }
        let started = Instant::now();
        while TcpStream::connect(&server.addr).is_err() {
            if let Some(status) = server.child.try_wait().expect("try_wait") {
                panic!("ringflow serve exited with {status}: {}", log.text());
            }
            assert!(started.elapsed() < Duration::from_secs(60), "no server");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the server's stderr goes: beside the mount, not on the filesystem that fills up
/// (there the server's own line about ENOSPC could not be written).
fn log_path(data: &Path) -> PathBuf {
    let mount = data.parent().expect("the data directory is in the mount");
    mount
        .parent()
        .expect("the mount is in the test folder")
        .join("server.log")
}

fn log_of(data: &Path) -> String {
    std::fs::read_to_string(log_path(data)).unwrap_or_default()
}

fn create(pad: &str) -> Request {
    Request::CreateInstance(CreateInstance {
        bpmn_process_id: "one-task".into(),
        variables: format!(r#"{{"pad": "{pad}"}}"#),
        ..CreateInstance::default()
    })
}

#[test]
fn a_full_disk_stops_the_shard_with_a_message_and_loses_no_acknowledged_instance() {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("disk-full");
    if base.join("mnt").exists() {
        let _ = run("umount", &[path(&base.join("mnt"))]);
    }
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).expect("the test folder");
    let mounted = match Mounted::make(&base) {
        Ok(mounted) => mounted,
        Err(why) => {
            assert!(
                std::env::var("RINGFLOW_REQUIRE_LOOP_MOUNT").as_deref() != Ok("1"),
                "RINGFLOW_REQUIRE_LOOP_MOUNT=1 but no loop-mounted filesystem: {why}"
            );
            eprintln!("skipped: no loop-mounted filesystem here ({why})");
            return;
        }
    };
    let data = mounted.at.join("data");
    let server = Server::start(&data, "127.0.0.1:0");
    let addr = server.addr.clone();
    let mut client = Client::connect(&addr).expect("connect");
    client
        .deploy(vec![Resource {
            name: "one-task.bpmn".into(),
            content: ONE_TASK.as_bytes().to_vec(),
        }])
        .expect("deploy");
    let pad = "x".repeat(PAD_BYTES);
    let mut acknowledged = BTreeSet::new();
    let mut refusal = None;
    let connection = client.connection(0).expect("connect to shard 0");
    'load: for _ in 0..1_000 {
        let requests: Vec<Request> = (0..50).map(|_| create(&pad)).collect();
        let ids = match connection.send_batch(&requests) {
            Ok(ids) => ids,
            Err(error) => {
                refusal = Some(error.to_string());
                break;
            }
        };
        for id in ids {
            match connection.wait_for(id, Duration::from_secs(60)) {
                Ok(Response::InstanceCreated(created)) => {
                    acknowledged.insert(created.process_instance_key);
                }
                Ok(Response::Error(error)) => {
                    assert_eq!(error.code, ErrorCode::Unavailable, "{error:?}");
                    refusal = Some(error.message);
                    break 'load;
                }
                Ok(other) => panic!("expected a creation, got {other:?}"),
                Err(error) => panic!("no answer: {error}"),
            }
        }
    }
    let refusal = refusal.unwrap_or_else(|| {
        panic!(
            "the disk never filled ({} instances acknowledged)",
            acknowledged.len()
        )
    });
    assert!(
        refusal.contains("ENOSPC") && refusal.contains("free space"),
        "the refusal names the full disk: {refusal}"
    );
    assert!(
        acknowledged.len() > 1_000,
        "the journal took {} instances",
        acknowledged.len()
    );
    let log = log_of(&data);
    assert!(log.contains("ENOSPC"), "the server's log says why: {log}");
    drop(client);
    drop(server);

    // Room again: every acknowledged instance is there, and new ones are taken.
    mounted.grow(2 * IMAGE_MIB);
    let _server = Server::start(&data, &addr);
    let mut client = Client::connect(&addr).expect("connect");
    let found: BTreeSet<u64> = activate_all(&mut client, "check")
        .iter()
        .map(|job| job.process_instance_key)
        .collect();
    let lost: Vec<_> = acknowledged.difference(&found).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged instances lost: {:?}",
        lost.len(),
        acknowledged.len(),
        &lost[..lost.len().min(10)]
    );
    let connection = client.connection(0).expect("connect to shard 0");
    match connection.call(&create("after")) {
        Ok(Response::InstanceCreated(_)) => {}
        other => panic!("a create after the restart: {other:?}"),
    }
}
