//! Building a board's kernel and writing its images: flat binaries from the ELF's loadable segments (no objcopy needed).

use std::path::{Path, PathBuf};
use std::process::Command;

use object::{Object, ObjectSegment};

use crate::boards::{Board, ImageFormat};

/// What a build produced.
pub struct Built {
    /// The kernel ELF (with symbols).
    pub elf: PathBuf,
    /// The file QEMU's `-kernel` takes.
    pub kernel: PathBuf,
}

/// Builds a board's kernel with cargo and writes its image.
pub fn build(board: &Board, release: bool) -> Result<Built, String> {
    build_with(board, release, false)
}

/// Builds a board's kernel, with defmt logging when `defmt` is set (output in a separate
/// directory so it never mixes with the plain build).
pub fn build_with(board: &Board, release: bool, defmt: bool) -> Result<Built, String> {
    crate::setup::ensure_target(&board.target)?;
    let profile = if release { "release" } else { "debug" };
    eprintln!("xtask: building {} ({} {}, {})", board.board, board.package, board.target, profile);
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(crate::root()).args(["build", "--package", &board.package, "--target", &board.target]);
    if release {
        command.arg("--release");
    }
    if defmt {
        command
            .args(["--features", "defmt", "--target-dir"])
            .arg(crate::target_directory().join("defmt"))
            .env("DEFMT_LOG", std::env::var("DEFMT_LOG").unwrap_or_else(|_| "info".into()));
    }
    let status = command.status().map_err(|e| format!("running cargo: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build of {} failed", board.board));
    }
    let target_directory = if defmt { crate::target_directory().join("defmt") } else { crate::target_directory() };
    let elf = target_directory.join(&board.target).join(profile).join(&board.binary);
    let output_directory = crate::target_directory().join("hinoki").join(&board.board).join(if defmt {
        format!("{profile}-defmt")
    } else {
        profile.to_string()
    });
    std::fs::create_dir_all(&output_directory).map_err(|e| e.to_string())?;
    let kernel = match board.image {
        ImageFormat::Elf => elf.clone(),
        ImageFormat::Arm64Image => {
            let path = output_directory.join("Image");
            write_flat_binary(&elf, &path)?;
            path
        }
        ImageFormat::Kernel8 => {
            let path = output_directory.join("kernel8.img");
            write_flat_binary(&elf, &path)?;
            path
        }
    };
    Ok(Built { elf, kernel })
}

/// Writes the ELF's loadable segments (those with file contents) as one flat image starting
/// at the lowest physical address. BSS is not included: the entry code clears it.
pub fn write_flat_binary(elf_path: &Path, output: &Path) -> Result<(), String> {
    let data = std::fs::read(elf_path).map_err(|e| format!("reading {}: {e}", elf_path.display()))?;
    let image = flat_binary(&data)?;
    std::fs::write(output, image).map_err(|e| format!("writing {}: {e}", output.display()))
}

/// The flat image of an ELF file's loadable segments.
pub fn flat_binary(elf: &[u8]) -> Result<Vec<u8>, String> {
    let file = object::File::parse(elf).map_err(|e| format!("not an ELF file: {e}"))?;
    let mut segments = Vec::new();
    for segment in file.segments() {
        let (offset, size) = segment.file_range();
        if size == 0 {
            continue;
        }
        let bytes = elf.get(offset as usize..(offset + size) as usize).ok_or("segment outside the file")?;
        segments.push((physical_address(&file, segment.address()), bytes));
    }
    let base = segments.iter().map(|(address, _)| *address).min().ok_or("the ELF has no loadable segments")?;
    let end = segments.iter().map(|(address, bytes)| address + bytes.len() as u64).max().unwrap_or(base);
    if end - base > 256 * 1024 * 1024 {
        return Err(format!("loadable segments span {:#x} bytes; refusing to write such an image", end - base));
    }
    let mut image = vec![0u8; (end - base) as usize];
    for (address, bytes) in segments {
        let start = (address - base) as usize;
        image[start..start + bytes.len()].copy_from_slice(bytes);
    }
    Ok(image)
}

/// Hinoki links its aarch64 kernels at their physical load address, so the segment's
/// virtual address is its physical address.
fn physical_address(_file: &object::File<'_>, address: u64) -> u64 {
    address
}

/// `cargo xtask image --board B --out DIR`: the files for the board's boot medium.
pub fn write_boot_medium(options: &crate::Options) -> Result<(), String> {
    let board = crate::boards::find(options.board.as_deref())?;
    let out = options.out.clone().ok_or("image needs --out DIR")?;
    let built = build(&board, options.release)?;
    std::fs::create_dir_all(&out).map_err(|e| format!("creating {}: {e}", out.display()))?;
    let kernel_name = built.kernel.file_name().unwrap().to_owned();
    std::fs::copy(&built.kernel, out.join(&kernel_name)).map_err(|e| e.to_string())?;
    let mut written = vec![kernel_name.to_string_lossy().to_string()];
    let medium = board.directory.join("sdcard");
    if let Ok(entries) = std::fs::read_dir(&medium) {
        for entry in entries.flatten() {
            std::fs::copy(entry.path(), out.join(entry.file_name())).map_err(|e| e.to_string())?;
            written.push(entry.file_name().to_string_lossy().to_string());
        }
    }
    written.sort();
    println!("xtask: wrote {} to {}", written.join(", "), out.display());
    if medium.is_dir() {
        println!("xtask: copy these to the FAT boot partition with the firmware files named in README.md");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn rejects_non_elf_input() {
        assert!(super::flat_binary(b"not an elf").is_err());
    }
}
