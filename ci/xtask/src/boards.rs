//! Board descriptions, read from each board crate's `[package.metadata.hinoki]`.

use std::path::PathBuf;

use serde::Deserialize;

/// How a board's kernel is packaged for QEMU and for its boot medium.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ImageFormat {
    /// The ELF itself (PVH / multiboot2 on PC).
    Elf,
    /// A flat arm64 `Image` (QEMU virt `-kernel`).
    Arm64Image,
    /// A flat `kernel8.img` (Raspberry Pi firmware and QEMU raspi machines).
    Kernel8,
}

/// One board.
#[derive(Clone, Debug, Deserialize)]
pub struct Board {
    pub board: String,
    pub arch: String,
    pub target: String,
    pub image: ImageFormat,
    pub qemu: Vec<String>,
    #[serde(default)]
    pub smp_flag: bool,
    /// Cargo package name (filled in from the manifest).
    #[serde(skip)]
    pub package: String,
    /// Binary name (filled in from the manifest).
    #[serde(skip)]
    pub binary: String,
    /// The board crate's directory.
    #[serde(skip)]
    pub directory: PathBuf,
}

#[derive(Deserialize)]
struct Manifest {
    package: Package,
    #[serde(default)]
    bin: Vec<BinaryTarget>,
}

#[derive(Deserialize)]
struct Package {
    name: String,
    metadata: Option<Metadata>,
}

#[derive(Deserialize)]
struct Metadata {
    hinoki: Option<Board>,
}

#[derive(Deserialize)]
struct BinaryTarget {
    name: String,
}

/// Every board crate under `boards/` that declares `[package.metadata.hinoki]`.
pub fn all() -> Result<Vec<Board>, String> {
    let directory = crate::root().join("boards");
    let mut boards = Vec::new();
    let entries = std::fs::read_dir(&directory).map_err(|e| format!("reading {}: {e}", directory.display()))?;
    for entry in entries.flatten() {
        let manifest_path = entry.path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest_path) else { continue };
        let manifest: Manifest = toml::from_str(&text).map_err(|e| format!("{}: {e}", manifest_path.display()))?;
        let Some(mut board) = manifest.package.metadata.and_then(|m| m.hinoki) else { continue };
        board.binary = manifest.bin.first().map(|b| b.name.clone()).unwrap_or_else(|| manifest.package.name.clone());
        board.package = manifest.package.name;
        board.directory = entry.path();
        boards.push(board);
    }
    boards.sort_by(|a, b| order(&a.board).cmp(&order(&b.board)).then(a.board.cmp(&b.board)));
    Ok(boards)
}

fn order(name: &str) -> usize {
    ["qemu-virt", "pc", "raspi3b", "raspi4b"].iter().position(|n| *n == name).unwrap_or(usize::MAX)
}

/// The board named `name`, or the default board (`qemu-virt`).
pub fn find(name: Option<&str>) -> Result<Board, String> {
    let name = name.unwrap_or("qemu-virt");
    let boards = all()?;
    let names: Vec<&str> = boards.iter().map(|b| b.board.as_str()).collect();
    boards.iter().find(|b| b.board == name).cloned().ok_or_else(|| format!("no board named '{name}' (boards: {})", names.join(", ")))
}

/// `cargo xtask boards`.
pub fn list() -> Result<(), String> {
    println!("{:<10} {:<8} {:<22} QEMU", "board", "arch", "target");
    for board in all()? {
        println!("{:<10} {:<8} {:<22} {}", board.board, board.arch, board.target, board.qemu.join(" "));
    }
    Ok(())
}
