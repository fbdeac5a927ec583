//! `skiff images`: the node's image store from the command line, as `ctr images import` / `ls` and
//! `k3s ctr` do. It works on the store of `--data-dir` directly (a running agent sees what it
//! imports at once).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use skiff_kubelet::images::{manager::ImageManager, store_dir};

/// `skiff images …`.
#[derive(Subcommand, Debug)]
pub enum ImagesCommand {
    /// Import a docker-archive (`docker save`) or OCI-layout tarball, gzipped or not.
    Import(ImportArgs),
    /// List the images in the store.
    Ls(StoreArgs),
}

/// Where the store is.
#[derive(Args, Debug)]
pub struct StoreArgs {
    /// The node's data directory (as `skiff agent --data-dir`); the store is `<data-dir>/agent/image-store`.
    #[arg(long, default_value = "/var/lib/skiff")]
    data_dir: PathBuf,
}

/// `skiff images import`.
#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The tarballs.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    #[command(flatten)]
    store: StoreArgs,
}

fn open(args: &StoreArgs) -> anyhow::Result<ImageManager> {
    let dir = store_dir(&args.data_dir.join("agent"));
    ImageManager::open(&dir).with_context(|| format!("cannot open the image store {}", dir.display()))
}

/// Runs `skiff images …`.
pub fn run(command: ImagesCommand) -> anyhow::Result<()> {
    match command {
        ImagesCommand::Import(args) => {
            let images = open(&args.store)?;
            for file in &args.files {
                let imported = images
                    .import(file)
                    .with_context(|| format!("cannot import {}", file.display()))?;
                for image in imported {
                    println!("imported {} ({})", image.name, image.repo_digest);
                }
            }
            Ok(())
        }
        ImagesCommand::Ls(args) => {
            let images = open(&args)?;
            let mut list = images.store().list()?;
            list.sort_by(|a, b| a.name.cmp(&b.name));
            println!("{:<60} {:<71} {:>10}", "REF", "DIGEST", "SIZE");
            for image in list {
                println!(
                    "{:<60} {:<71} {:>10}",
                    image.name,
                    image.target,
                    human(image.size)
                );
            }
            Ok(())
        }
    }
}

/// `2.1 MiB`.
fn human(bytes: u64) -> String {
    let mut size = bytes as f64;
    for unit in ["B", "KiB", "MiB", "GiB"] {
        if size < 1024.0 || unit == "GiB" {
            return format!("{size:.1} {unit}");
        }
        size /= 1024.0;
    }
    unreachable!()
}
