//! `samqfs-double`: a stand-in for Oracle HSM's `stage`, `archive` and `release` commands (and for
//! `sam-dbupd` catching up, `dbupd`), for tests where no SAM-QFS exists. It keeps the commands'
//! interface (file paths as arguments, exit 0 when every file succeeded, 1 when some failed with a
//! message per file on stderr, 2 for usage errors) and changes the sideband catalog as Oracle HSM
//! would: `archive` copies the data to a "tape" directory and adds a `sam_archive` row (copy 0, next
//! position on the volume); `release` frees the file's blocks (it becomes a hole of the same size) and
//! sets `online = 0`; `stage` puts the data back and sets `online = 1`. Every invocation is appended
//! to the log (command, then the files, tab-separated) so tests see the order they were asked in.
//!
//! Usage: samqfs-double --db URL --mount DIR --tapes DIR --log FILE [--vsn VSN] [--media MT]
//!        [--stage-delay-ms N] stage|archive|release|dbupd FILE...
//!        samqfs-double --db URL create-catalog|drop-catalog
//! (`create-catalog` makes the database the URL names, with the sideband tables, for a started
//! server's tests; `drop-catalog` removes it.)
//! With `--stage-delay-ms`, `stage` returns after checking the files (as a stage without `-w`
//! returns once queued) and a detached process brings them online after the delay.

use archive_sideband_testkit::database::{create_catalog_at, drop_catalog_at};
use archive_sideband_testkit::sam::{Copy, Sam};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Clone)]
struct Args {
    db: String,
    mount: PathBuf,
    tapes: PathBuf,
    log: PathBuf,
    vsn: String,
    media: String,
    stage_delay_ms: u64,
    /// Set in the detached process that finishes delayed stages.
    wait_ms: u64,
    command: String,
    files: Vec<PathBuf>,
}

const USAGE: &str = "usage: samqfs-double --db URL --mount DIR --tapes DIR --log FILE [--vsn VSN] \
                     [--media MT] [--stage-delay-ms N] stage|archive|release|dbupd FILE...\n       \
                     samqfs-double --db URL create-catalog|drop-catalog";

fn parse(mut raw: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut args = Args {
        db: String::new(),
        mount: PathBuf::new(),
        tapes: PathBuf::new(),
        log: PathBuf::new(),
        vsn: "VSN001".into(),
        media: "li".into(),
        stage_delay_ms: 0,
        wait_ms: 0,
        command: String::new(),
        files: Vec::new(),
    };
    while let Some(word) = raw.next() {
        if !word.starts_with("--") {
            args.command = word;
            break;
        }
        let value = raw.next().ok_or(format!("{word} needs a value"))?;
        let number = || {
            value
                .parse::<u64>()
                .map_err(|e| format!("{word} {value}: {e}"))
        };
        match word.as_str() {
            "--db" => args.db = value,
            "--mount" => args.mount = value.into(),
            "--tapes" => args.tapes = value.into(),
            "--log" => args.log = value.into(),
            "--vsn" => args.vsn = value,
            "--media" => args.media = value,
            "--stage-delay-ms" => args.stage_delay_ms = number()?,
            "--wait-ms" => args.wait_ms = number()?,
            _ => return Err(format!("unknown option {word}")),
        }
    }
    args.files = raw.map(PathBuf::from).collect();
    if ["create-catalog", "drop-catalog"].contains(&args.command.as_str()) && !args.db.is_empty() {
        return Ok(args);
    }
    if args.db.is_empty() || args.mount.as_os_str().is_empty() || args.tapes.as_os_str().is_empty()
    {
        return Err("--db, --mount and --tapes are required".into());
    }
    if !["stage", "archive", "release", "dbupd"].contains(&args.command.as_str()) {
        return Err(format!("unknown command {:?}", args.command));
    }
    if args.files.is_empty() {
        return Err("no files given".into());
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("samqfs-double: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if args.wait_ms == 0 && !args.log.as_os_str().is_empty() && !args.files.is_empty() {
        let mut line = args.command.clone();
        for f in &args.files {
            line.push('\t');
            line.push_str(&f.display().to_string());
        }
        line.push('\n');
        let logged = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&args.log)
            .and_then(|mut log| log.write_all(line.as_bytes()));
        if let Err(e) = logged {
            eprintln!("samqfs-double: log {}: {e}", args.log.display());
            return ExitCode::from(2);
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let catalog = match args.command.as_str() {
        "create-catalog" => Some(create_catalog_at(&args.db)),
        "drop-catalog" => None,
        _ => return runtime.block_on(run(args)),
    };
    let done = match catalog {
        Some(create) => runtime.block_on(create),
        None => runtime.block_on(drop_catalog_at(&args.db)),
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("samqfs-double: {e}");
            ExitCode::from(1)
        }
    }
}

async fn run(args: Args) -> ExitCode {
    if args.wait_ms > 0 {
        tokio::time::sleep(Duration::from_millis(args.wait_ms)).await;
    }
    let pool = match sqlx::mysql::MySqlPoolOptions::new()
        .max_connections(1)
        .connect(&args.db)
        .await
    {
        Ok(pool) => pool,
        Err(e) => {
            eprintln!("samqfs-double: catalog {}: {e}", args.db);
            return ExitCode::from(1);
        }
    };
    let sam = Sam::new(pool.clone(), &args.mount);
    let mut failed = false;
    let mut queued = Vec::new();
    for file in &args.files {
        let outcome = match args.command.as_str() {
            "dbupd" => sam.catalogue(file).await.map(drop),
            "archive" => archive(&sam, &args, file).await,
            "release" => release(&sam, file).await,
            _ if args.stage_delay_ms > 0 => check_stage(&sam, file)
                .await
                .map(|_| queued.push(file.clone())),
            _ => stage(&sam, &args, file).await,
        };
        if let Err(message) = outcome {
            eprintln!("{}: {message}", args.command);
            failed = true;
        }
    }
    pool.close().await;
    if !queued.is_empty() {
        // The stages finish in a detached process, after this command returned.
        let exe = std::env::current_exe().expect("own path");
        let spawned = std::process::Command::new(exe)
            .args(["--db", &args.db])
            .arg("--mount")
            .arg(&args.mount)
            .arg("--tapes")
            .arg(&args.tapes)
            .args(["--wait-ms", &args.stage_delay_ms.to_string(), "stage"])
            .args(&queued)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        if let Err(e) = spawned {
            eprintln!("stage: cannot queue: {e}");
            failed = true;
        }
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn tape_file(args: &Args, copy: &Copy, ino: u64, gen: u64) -> PathBuf {
    args.tapes
        .join(format!("{}.{}", copy.media_type, copy.vsn))
        .join(format!("{ino}.{gen}"))
}

async fn archive(sam: &Sam, args: &Args, file: &Path) -> Result<(), String> {
    let inode = sam.catalogue(file).await?;
    if sam.first_copy(inode).await?.is_some() {
        return Ok(());
    }
    let position = sam.next_position(&args.media, &args.vsn).await?;
    let copy = Copy {
        copy: 0,
        media_type: args.media.clone(),
        vsn: args.vsn.clone(),
        position,
        offset: 0,
        stale: false,
    };
    let tape = tape_file(args, &copy, inode.ino, inode.gen);
    std::fs::create_dir_all(tape.parent().unwrap()).map_err(|e| e.to_string())?;
    let size = std::fs::copy(file, &tape).map_err(|e| format!("{}: {e}", file.display()))?;
    sam.add_copy(inode, &copy, size).await
}

async fn release(sam: &Sam, file: &Path) -> Result<(), String> {
    let no_copy = || format!("{}: Release failed: no archive copy", file.display());
    let inode = sam.entry_of(file).await?.ok_or_else(no_copy)?;
    sam.first_copy(inode).await?.ok_or_else(no_copy)?;
    if !sam.online(inode).await? {
        return Ok(());
    }
    // The blocks go; size and times stay (reading the hole would give zeros, not the data).
    let meta = std::fs::metadata(file).map_err(|e| e.to_string())?;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(file)
        .map_err(|e| format!("{}: {e}", file.display()))?;
    f.set_len(0).map_err(|e| e.to_string())?;
    f.set_len(meta.len()).map_err(|e| e.to_string())?;
    keep_times(&f, &meta)?;
    sam.set_online(inode, false).await
}

/// The stage request is valid: the file is catalogued and online, or has an archive copy.
async fn check_stage(
    sam: &Sam,
    file: &Path,
) -> Result<Option<(archive_sideband_testkit::sam::Inode, Copy)>, String> {
    let Some(inode) = sam.entry_of(file).await? else {
        // Not catalogued yet: just written, so online.
        return Ok(None);
    };
    if sam.online(inode).await? {
        return Ok(None);
    }
    let copy = sam
        .first_copy(inode)
        .await?
        .ok_or_else(|| format!("{}: Stage failed: no archive copy (ENXIO)", file.display()))?;
    Ok(Some((inode, copy)))
}

async fn stage(sam: &Sam, args: &Args, file: &Path) -> Result<(), String> {
    let Some((inode, copy)) = check_stage(sam, file).await? else {
        return Ok(());
    };
    let tape = tape_file(args, &copy, inode.ino, inode.gen);
    let meta = std::fs::metadata(file).map_err(|e| e.to_string())?;
    let mut from = std::fs::File::open(&tape).map_err(|e| format!("{}: {e}", tape.display()))?;
    let mut to = std::fs::OpenOptions::new()
        .write(true)
        .open(file)
        .map_err(|e| format!("{}: {e}", file.display()))?;
    std::io::copy(&mut from, &mut to).map_err(|e| e.to_string())?;
    keep_times(&to, &meta)?;
    to.sync_all().map_err(|e| e.to_string())?;
    sam.set_online(inode, true).await
}

fn keep_times(f: &std::fs::File, meta: &std::fs::Metadata) -> Result<(), String> {
    let times = std::fs::FileTimes::new()
        .set_modified(meta.modified().map_err(|e| e.to_string())?)
        .set_accessed(meta.accessed().map_err(|e| e.to_string())?);
    f.set_times(times).map_err(|e| e.to_string())
}
