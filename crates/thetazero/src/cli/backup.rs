//! `thetazero backup`: a consistent copy of an SQLite deployment, taken while
//! it serves: the database through `VACUUM INTO` and the signing key, in a
//! new directory readable by its owner only. The directory is a data
//! directory: `thetazero serve --data-dir` starts on it as it is.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;

use super::{exit, fail, Out, StoreArgs};
use crate::admin;

#[derive(Args, Debug)]
pub struct BackupArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// The new directory the copy goes into (created mode 0700; it must
    /// not exist yet).
    #[arg(long)]
    pub out_dir: PathBuf,
}

pub fn run(out: Out, args: BackupArgs) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let config = args.store.resolve()?;
    let Some(db) = admin::sqlite_path(&config.database_url) else {
        return Err(fail(
            exit::USAGE,
            "backup copies an SQLite deployment; back PostgreSQL up with its own tools (pg_dump) and copy the signing key",
        ));
    };
    if !db.exists() {
        return Err(fail(
            exit::NOT_FOUND,
            format!("no database at {}", db.display()),
        ));
    }
    let key = std::fs::read(&config.signing_key_file).with_context(|| {
        format!(
            "reading the signing key {}",
            config.signing_key_file.display()
        )
    })?;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&args.out_dir)
        .with_context(|| {
            format!(
                "creating {} (it must not exist yet)",
                args.out_dir.display()
            )
        })?;
    let db_out = args.out_dir.join("thetazero.db");
    thetazero_store_sqlite::backup_to(&db, &db_out)
        .map_err(|e| anyhow::anyhow!("copying the database: {e}"))?;
    let key_out = args.out_dir.join("signing.key");
    crate::signing::write_private(
        &key_out,
        std::str::from_utf8(&key).context("the signing key is not text")?,
    )
    .with_context(|| format!("writing {}", key_out.display()))?;
    let bytes = std::fs::metadata(&db_out)?.len();
    let summary = json!({
        "out_dir": args.out_dir,
        "database": db_out,
        "signing_key": key_out,
        "database_bytes": bytes,
    });
    out.print(&summary, || {
        println!(
            "backed up {} ({bytes} bytes) and the signing key into {}",
            db.display(),
            args.out_dir.display()
        );
        println!(
            "restore: thetazero serve --data-dir {}  (or copy both files into a new data directory)",
            args.out_dir.display()
        );
    })
}
