//! Making sure the machine has what the build and QEMU runs need: rustup targets and QEMU.

use std::process::Command;

/// Adds the rustup target if the toolchain does not have it yet (the toolchain file names
/// both targets, but rustup installs them only with a fresh toolchain).
pub fn ensure_target(target: &str) -> Result<(), String> {
    let installed = Command::new("rustup").args(["target", "list", "--installed"]).current_dir(crate::root()).output();
    match installed {
        Ok(output) if String::from_utf8_lossy(&output.stdout).lines().any(|line| line.trim() == target) => Ok(()),
        Ok(_) => {
            eprintln!("xtask: installing the {target} target (rustup target add {target})");
            let status =
                Command::new("rustup").args(["target", "add", target]).current_dir(crate::root()).status().map_err(|e| e.to_string())?;
            if status.success() {
                Ok(())
            } else {
                Err(format!("could not install the {target} target; run: rustup target add {target}"))
            }
        }
        // No rustup: trust the toolchain and let cargo report a missing target.
        Err(_) => Ok(()),
    }
}

fn have(program: &str) -> bool {
    Command::new(program).arg("--version").output().map(|o| o.status.success()).unwrap_or(false)
}

const BACKPORTS_SOURCE: &str = "/etc/apt/sources.list.d/bookworm-backports.sources";

fn install_command() -> String {
    format!(
        "printf 'Types: deb\\nURIs: http://deb.debian.org/debian\\nSuites: bookworm-backports\\nComponents: main\\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\\n' > {BACKPORTS_SOURCE} && \
apt-get update && apt-get install -y -t bookworm-backports --no-install-recommends qemu-system-arm qemu-system-x86"
    )
}

/// Makes sure `program` (a qemu-system binary) exists, installing QEMU on Debian bookworm
/// when running as root, or printing the exact commands otherwise.
pub fn ensure_qemu(program: &str) -> Result<(), String> {
    if have(program) {
        return Ok(());
    }
    let debian_bookworm = std::fs::read_to_string("/etc/os-release").map(|t| t.contains("VERSION_CODENAME=bookworm")).unwrap_or(false);
    let root = Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false);
    if debian_bookworm && root {
        eprintln!("xtask: {program} not found; installing QEMU from bookworm-backports (matching the installed qemu-utils)");
        let status = Command::new("sh").arg("-c").arg(install_command()).status().map_err(|e| e.to_string())?;
        if status.success() && have(program) {
            return Ok(());
        }
        return Err(format!("installing QEMU failed; run as root:\n  {}", install_command()));
    }
    if debian_bookworm {
        return Err(format!("{program} not found; run as root:\n  {}", install_command()));
    }
    Err(format!(
        "{program} not found; install QEMU 8.2 or newer with the aarch64 and x86_64 system emulators \
(Debian/Ubuntu: apt-get install qemu-system-arm qemu-system-x86; Fedora: dnf install qemu-system-aarch64 qemu-system-x86; macOS: brew install qemu)"
    ))
}

/// Makes sure `defmt-print` is on the PATH, installing it with `cargo install` if not.
pub fn ensure_defmt_print() -> Result<(), String> {
    if Command::new("defmt-print").arg("--version").output().map(|o| o.status.success()).unwrap_or(false) {
        return Ok(());
    }
    eprintln!("xtask: installing defmt-print (cargo install defmt-print --version 1.2.0 --locked)");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["install", "defmt-print", "--version", "1.2.0", "--locked"])
        .status()
        .map_err(|e| e.to_string())?;
    if status.success() {
        Ok(())
    } else {
        Err("could not install defmt-print; run: cargo install defmt-print --version 1.2.0 --locked".into())
    }
}
