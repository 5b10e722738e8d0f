//! `molecule-man --out DIR [--date YYYY-MM-DD]`: writes the man pages of both binaries, one per
//! command and one per visible subcommand (`git-credential-molecule.1`,
//! `git-credential-molecule-configure.1`, …, `gh-token-refresh.1`, …), rendered by clap_mangen
//! from the same clap definitions that parse the binaries' command lines and print `--help`.
//! scripts/release.sh runs it; the release artifacts ship what it writes (DESIGN.md,
//! "Releases"). The date is the release's (`SOURCE_DATE_EPOCH`), so the same commit gives the
//! same pages.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, Parser};

/// Writes the man pages of git-credential-molecule and gh-token-refresh.
#[derive(Parser)]
#[command(name = "molecule-man")]
struct Args {
    /// Directory to write the pages into (created if missing)
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// The date each page shows (the release's)
    #[arg(long, value_name = "YYYY-MM-DD", default_value = "")]
    date: String,
}

/// Writes `command`'s page and, recursively, one for each subcommand `--help` lists. Returns
/// the files written.
fn write_pages(command: clap::Command, date: &str, out: &Path) -> std::io::Result<Vec<PathBuf>> {
    // The release's version alone: the full `--version` line names the commit and the
    // target this program was built for, which is the build host's, not the binaries'.
    let mut command = command.version(env!("CARGO_PKG_VERSION"));
    // Subcommands get their display names (`git-credential-molecule-configure`) from here.
    command.build();
    let mut written = Vec::new();
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        written.extend(write_pages(sub.clone(), date, out)?);
    }
    let source = format!("molecule-credential {}", env!("CARGO_PKG_VERSION"));
    let man = clap_mangen::Man::new(command).date(date).source(source);
    let path = out.join(man.get_filename());
    let mut page = Vec::new();
    man.render(&mut page)?;
    std::fs::write(&path, page)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    written.push(path);
    Ok(written)
}

#[expect(clippy::print_stderr, reason = "a build tool reports on stderr")]
fn main() -> ExitCode {
    let args = Args::parse();
    let result = std::fs::create_dir_all(&args.out)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", args.out.display())))
        .and_then(|()| {
            let mut all = write_pages(
                git_credential_molecule::Cli::command(),
                &args.date,
                &args.out,
            )?;
            all.extend(write_pages(
                gh_token_refresh::Cli::command(),
                &args.date,
                &args.out,
            )?);
            Ok(all)
        });
    match result {
        Ok(pages) => {
            let mut stdout = std::io::stdout().lock();
            for p in pages {
                let _ = writeln!(stdout, "{}", p.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("molecule-man: {e}");
            ExitCode::FAILURE
        }
    }
}
