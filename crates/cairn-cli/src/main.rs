//! The `cairn` binary: runs the servers (`local`, `master`, `chunkserver`) and the user and
//! admin commands. A thin front: it parses arguments, sets up logging, calls the crates
//! below, and turns errors into one line on stderr and a documented exit code.

mod bench;
mod fs;
mod fsck;
mod locking;
mod mount;
mod recovery_opts;
mod servers;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use cairn_client::{Client, ClientConfig};
use cairn_common::logging::{self, LogFormat};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "cairn",
    version,
    about = "Cairn: a replicated distributed file system"
)]
struct Cli {
    /// Address of the master.
    #[arg(
        long,
        global = true,
        env = "CAIRN_MASTER",
        default_value = "127.0.0.1:5011"
    )]
    master: String,
    /// Seconds a command waits for an unavailable master before it fails with TIMEOUT_ERROR.
    #[arg(long, global = true, default_value_t = 30)]
    timeout: u64,
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value_t = LogFmt::Text)]
    log_format: LogFmt,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFmt {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Start a master and three chunk servers in this process, data under one directory.
    Local(servers::LocalArgs),
    /// Run a master.
    Master(servers::MasterArgs),
    /// Run a chunk server.
    Chunkserver(servers::ChunkServerArgs),
    /// Upload a local file (`-` for stdin).
    Put {
        local: String,
        remote: String,
        /// Replace an existing file.
        #[arg(short, long)]
        force: bool,
    },
    /// Download a file to a local path (`-` for stdout).
    Get { remote: String, local: String },
    /// Print files to stdout.
    Cat { remotes: Vec<String> },
    /// List a directory.
    Ls {
        #[arg(default_value = "/")]
        path: String,
        /// Long listing: type and mode, size, modification time.
        #[arg(short = 'l')]
        long: bool,
        #[arg(long)]
        json: bool,
    },
    /// Create directories.
    Mkdir {
        paths: Vec<String>,
        /// Create missing parents; no error if the directory exists.
        #[arg(short, long)]
        parents: bool,
    },
    /// Remove files or directories.
    Rm {
        paths: Vec<String>,
        /// Remove directories and their contents.
        #[arg(short, long)]
        recursive: bool,
    },
    /// Rename or move, atomically (replaces an existing file target).
    Mv { from: String, to: String },
    /// Show attributes (and, with --json, every chunk and its replicas). Several paths
    /// are looked up in one round trip; each missing one is an error line, and the exit
    /// code is the first failure's.
    Stat {
        #[arg(required = true)]
        paths: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Classic verb: create an empty file.
    Create { name: String },
    /// Replace a file's content with CONTENT (creating it if needed), or with --offset write
    /// CONTENT at that offset (extending the file; a gap reads as zeros).
    Write(locking::WriteArgs),
    /// Append a local file's bytes (`-` or nothing: stdin) to NAME as one record; concurrent
    /// appends never overwrite each other.
    Append {
        name: String,
        #[arg(default_value = "-")]
        local: String,
    },
    /// Set a file's length (shrinking drops the tail, growing adds zeros), e.g. `1MiB`.
    Truncate { name: String, size: String },
    /// Hold a lock on NAME while COMMAND runs; exits with COMMAND's exit code.
    Lock(locking::LockArgs),
    /// Classic verb: print a file's content.
    Read { name: String },
    /// Classic verb: delete a file.
    Delete { name: String },
    /// Show the cluster: servers, replication health, namespace totals.
    Status {
        #[arg(long)]
        json: bool,
        /// Refresh every SECS seconds until Ctrl-C (like top).
        #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "2")]
        watch: Option<f64>,
    },
    /// Measure throughput against a running cluster.
    Bench(bench::BenchArgs),
    /// Verify every replica of every chunk under PATH; exit 0 only if all are at goal
    /// (20: under goal or unverified, 21: corrupt replicas, 22: lost chunks).
    Fsck(fsck::FsckArgs),
    /// Mount the file system (FUSE) at MOUNTPOINT; in the background unless --foreground.
    Mount(mount::MountArgs),
    /// Unmount a Cairn mount.
    Umount { mountpoint: PathBuf },
}

/// A failure, with the exit code it maps to.
pub enum Failure {
    /// An error with a Cairn kind (exit code per kind, classic name shown).
    Cairn(cairn_client::Error),
    /// Anything else (exit code 1).
    Other(anyhow::Error),
    /// Exit with this code and print nothing (e.g. the code of a command run under a lock).
    Exit(u8),
}

impl From<cairn_client::Error> for Failure {
    fn from(e: cairn_client::Error) -> Self {
        Failure::Cairn(e)
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Other(e)
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Other(e.into())
    }
}

pub type CmdResult = Result<(), Failure>;

impl Cli {
    fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new(self.master.clone());
        c.deadline = Duration::from_secs(self.timeout.max(1));
        c.attempt_timeout = c.deadline.min(Duration::from_secs(10));
        c
    }

    async fn client(&self) -> Result<Client, Failure> {
        Ok(Client::connect(self.client_config()).await?)
    }
}

async fn dispatch(cli: Cli) -> CmdResult {
    match &cli.command {
        Command::Local(a) => servers::local(a).await,
        Command::Master(a) => servers::master(a).await,
        Command::Chunkserver(a) => servers::chunkserver(a, &cli.master).await,
        Command::Put {
            local,
            remote,
            force,
        } => fs::put(&cli.client().await?, local, remote, *force).await,
        Command::Get { remote, local } => fs::get(&cli.client().await?, remote, local).await,
        Command::Cat { remotes } => fs::cat(&cli.client().await?, remotes).await,
        Command::Ls { path, long, json } => fs::ls(&cli.client().await?, path, *long, *json).await,
        Command::Mkdir { paths, parents } => fs::mkdir(&cli.client().await?, paths, *parents).await,
        Command::Rm { paths, recursive } => fs::rm(&cli.client().await?, paths, *recursive).await,
        Command::Mv { from, to } => fs::mv(&cli.client().await?, from, to).await,
        Command::Stat { paths, json } => fs::stat(&cli.client().await?, paths, *json).await,
        Command::Create { name } => fs::classic_create(&cli.client().await?, name).await,
        Command::Write(a) => locking::write(&cli.client().await?, a).await,
        Command::Append { name, local } => locking::append(&cli.client().await?, name, local).await,
        Command::Truncate { name, size } => {
            locking::truncate(&cli.client().await?, name, size).await
        }
        Command::Lock(a) => locking::lock(&cli.client().await?, a).await,
        Command::Read { name } => fs::classic_read(&cli.client().await?, name).await,
        Command::Delete { name } => fs::classic_delete(&cli.client().await?, name).await,
        Command::Status { json, watch } => {
            status::status(&cli.client().await?, *json, *watch).await
        }
        Command::Bench(a) => bench::bench(&cli.client().await?, a).await,
        Command::Fsck(a) => fsck::fsck(&cli.client().await?, a).await,
        Command::Mount(a) => mount::mount(&cli.client().await?, &cli.master, a).await,
        Command::Umount { mountpoint } => mount::umount(mountpoint),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let serving = matches!(
        cli.command,
        Command::Local(_) | Command::Master(_) | Command::Chunkserver(_)
    ) || matches!(&cli.command, Command::Mount(a) if a.foreground);
    let format = match cli.log_format {
        LogFmt::Text => LogFormat::Text,
        LogFmt::Json => LogFormat::Json,
    };
    logging::init(format, if serving { "info" } else { "warn" });
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Cairn(e)) => {
            let kind = e.kind();
            eprintln!("error: {e} ({})", kind.classic_name());
            ExitCode::from(kind.exit_code() as u8)
        }
        Err(Failure::Other(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
        Err(Failure::Exit(code)) => ExitCode::from(code),
    }
}

/// Default data directory of `cairn local`.
pub fn default_data_dir() -> PathBuf {
    PathBuf::from("cairn-data")
}
