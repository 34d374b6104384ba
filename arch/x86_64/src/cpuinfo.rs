//! `/proc/cpuinfo` in Linux's x86 format: what CPUID reports on each CPU (vendor, family, model, stepping, feature flags, APIC IDs, address sizes), recorded at bring-up and printed by the board's procfs file.

use core::fmt::{self, Write};

/// CPUID words the flags come from, in Linux's `cpufeature` word order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FeatureWords {
    /// CPUID.01H:EDX.
    pub standard_edx: u32,
    /// CPUID.80000001H:EDX.
    pub extended_edx: u32,
    /// Linux's synthetic word: bit 0 `constant_tsc`, bit 1 `nonstop_tsc` (invariant TSC).
    pub synthetic: u32,
    /// CPUID.01H:ECX.
    pub standard_ecx: u32,
    /// CPUID.80000001H:ECX.
    pub extended_ecx: u32,
    /// CPUID.(EAX=07H,ECX=0):EBX.
    pub structured_ebx: u32,
}

/// One CPU as CPUID describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuInfo {
    /// The 12-byte vendor string (`GenuineIntel`, `AuthenticAMD`).
    pub vendor: [u8; 12],
    /// CPUID leaf 1 EAX (family, model, stepping).
    pub signature: u32,
    /// The brand string, trimmed.
    pub model_name: [u8; 48],
    /// Bytes used in `model_name`.
    pub model_name_length: usize,
    /// Highest standard leaf.
    pub cpuid_level: u32,
    /// The APIC ID the kernel runs the CPU with.
    pub apic_id: u32,
    /// The APIC ID from CPUID leaf 1 (EBX[31:24]).
    pub initial_apic_id: u32,
    /// Feature flags.
    pub features: FeatureWords,
    /// Physical and linear address bits (CPUID.80000008H).
    pub address_bits: (u32, u32),
    /// CLFLUSH line size in bytes.
    pub clflush_size: u32,
}

/// (word index in [`FeatureWords`] order, bit, Linux's flag name).
const FLAGS: &[(usize, u32, &str)] = &[
    (0, 0, "fpu"),
    (0, 1, "vme"),
    (0, 2, "de"),
    (0, 3, "pse"),
    (0, 4, "tsc"),
    (0, 5, "msr"),
    (0, 6, "pae"),
    (0, 7, "mce"),
    (0, 8, "cx8"),
    (0, 9, "apic"),
    (0, 11, "sep"),
    (0, 12, "mtrr"),
    (0, 13, "pge"),
    (0, 14, "mca"),
    (0, 15, "cmov"),
    (0, 16, "pat"),
    (0, 17, "pse36"),
    (0, 19, "clflush"),
    (0, 23, "mmx"),
    (0, 24, "fxsr"),
    (0, 25, "sse"),
    (0, 26, "sse2"),
    (0, 27, "ss"),
    (0, 28, "ht"),
    (1, 11, "syscall"),
    (1, 20, "nx"),
    (1, 26, "pdpe1gb"),
    (1, 27, "rdtscp"),
    (1, 29, "lm"),
    (2, 0, "constant_tsc"),
    (2, 1, "nonstop_tsc"),
    (3, 0, "pni"),
    (3, 1, "pclmulqdq"),
    (3, 9, "ssse3"),
    (3, 12, "fma"),
    (3, 13, "cx16"),
    (3, 17, "pcid"),
    (3, 19, "sse4_1"),
    (3, 20, "sse4_2"),
    (3, 21, "x2apic"),
    (3, 22, "movbe"),
    (3, 23, "popcnt"),
    (3, 24, "tsc_deadline_timer"),
    (3, 25, "aes"),
    (3, 26, "xsave"),
    (3, 28, "avx"),
    (3, 29, "f16c"),
    (3, 30, "rdrand"),
    (3, 31, "hypervisor"),
    (4, 0, "lahf_lm"),
    (4, 1, "cmp_legacy"),
    (4, 2, "svm"),
    (4, 5, "abm"),
    (4, 6, "sse4a"),
    (4, 8, "3dnowprefetch"),
    (5, 0, "fsgsbase"),
    (5, 3, "bmi1"),
    (5, 5, "avx2"),
    (5, 7, "smep"),
    (5, 8, "bmi2"),
    (5, 9, "erms"),
    (5, 10, "invpcid"),
    (5, 18, "rdseed"),
    (5, 19, "adx"),
    (5, 20, "smap"),
    (5, 23, "clflushopt"),
    (5, 29, "sha_ni"),
];

impl FeatureWords {
    fn word(&self, index: usize) -> u32 {
        [self.standard_edx, self.extended_edx, self.synthetic, self.standard_ecx, self.extended_ecx, self.structured_ebx][index]
    }

    /// Linux's names of the set flags, in Linux's order.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        FLAGS.iter().filter(|(word, bit, _)| self.word(*word) & (1 << bit) != 0).map(|(_, _, name)| *name)
    }
}

impl CpuInfo {
    /// Family with the extended family added (when the base family is 0xf).
    pub fn family(&self) -> u32 {
        let base = (self.signature >> 8) & 0xf;
        if base == 0xf {
            base + ((self.signature >> 20) & 0xff)
        } else {
            base
        }
    }

    /// Model with the extended model added (families 6 and 0xf and up).
    pub fn model(&self) -> u32 {
        let base = (self.signature >> 4) & 0xf;
        if self.family() >= 6 {
            base | ((self.signature >> 16) & 0xf) << 4
        } else {
            base
        }
    }

    /// Stepping.
    pub fn stepping(&self) -> u32 {
        self.signature & 0xf
    }

    /// The vendor string.
    pub fn vendor_name(&self) -> &str {
        core::str::from_utf8(&self.vendor).unwrap_or("unknown")
    }

    /// The brand string.
    pub fn model_name(&self) -> &str {
        core::str::from_utf8(&self.model_name[..self.model_name_length]).unwrap_or("unknown")
    }

    /// Reads CPUID on the calling CPU; `apic_id` is the ID the kernel uses for it.
    #[cfg(target_arch = "x86_64")]
    pub fn read(apic_id: u32) -> CpuInfo {
        use crate::cpu::cpuid;
        let leaf0 = cpuid(0);
        let mut vendor = [0u8; 12];
        vendor[..4].copy_from_slice(&leaf0.ebx.to_le_bytes());
        vendor[4..8].copy_from_slice(&leaf0.edx.to_le_bytes());
        vendor[8..].copy_from_slice(&leaf0.ecx.to_le_bytes());
        let leaf1 = cpuid(1);
        let highest_extended = cpuid(0x8000_0000).eax;
        let extended = if highest_extended >= 0x8000_0001 {
            cpuid(0x8000_0001)
        } else {
            core::arch::x86_64::CpuidResult { eax: 0, ebx: 0, ecx: 0, edx: 0 }
        };
        let structured_ebx = if leaf0.eax >= 7 { core::arch::x86_64::__cpuid_count(7, 0).ebx } else { 0 };
        let invariant = crate::tsc::is_invariant();
        let address_bits = if highest_extended >= 0x8000_0008 {
            let sizes = cpuid(0x8000_0008).eax;
            (sizes & 0xff, (sizes >> 8) & 0xff)
        } else {
            (36, 48)
        };
        let mut model_name = [0u8; 48];
        let model_name_length = crate::cpu::brand_string(&mut model_name);
        CpuInfo {
            vendor,
            signature: leaf1.eax,
            model_name,
            model_name_length,
            cpuid_level: leaf0.eax,
            apic_id,
            initial_apic_id: leaf1.ebx >> 24,
            features: FeatureWords {
                standard_edx: leaf1.edx,
                extended_edx: extended.edx,
                synthetic: if invariant { 0b11 } else { 0 },
                standard_ecx: leaf1.ecx,
                extended_ecx: extended.ecx,
                structured_ebx,
            },
            address_bits,
            clflush_size: ((leaf1.ebx >> 8) & 0xff) * 8,
        }
    }

    /// Writes this CPU's paragraph: logical `processor` number, `cpu_khz` (the TSC rate),
    /// `siblings` (CPUs online), ending with the blank line Linux puts between CPUs.
    pub fn write(&self, out: &mut dyn Write, processor: u32, cpu_khz: u64, siblings: u32) -> fmt::Result {
        writeln!(out, "processor\t: {}", processor)?;
        writeln!(out, "vendor_id\t: {}", self.vendor_name())?;
        writeln!(out, "cpu family\t: {}", self.family())?;
        writeln!(out, "model\t\t: {}", self.model())?;
        writeln!(out, "model name\t: {}", self.model_name())?;
        writeln!(out, "stepping\t: {}", self.stepping())?;
        writeln!(out, "cpu MHz\t\t: {}.{:03}", cpu_khz / 1000, cpu_khz % 1000)?;
        writeln!(out, "physical id\t: 0")?;
        writeln!(out, "siblings\t: {}", siblings)?;
        writeln!(out, "core id\t\t: {}", processor)?;
        writeln!(out, "cpu cores\t: {}", siblings)?;
        writeln!(out, "apicid\t\t: {}", self.apic_id)?;
        writeln!(out, "initial apicid\t: {}", self.initial_apic_id)?;
        let has_fpu = if self.features.standard_edx & 1 != 0 { "yes" } else { "no" };
        writeln!(out, "fpu\t\t: {}", has_fpu)?;
        writeln!(out, "fpu_exception\t: {}", has_fpu)?;
        writeln!(out, "cpuid level\t: {}", self.cpuid_level)?;
        writeln!(out, "wp\t\t: yes")?;
        write!(out, "flags\t\t:")?;
        for name in self.features.names() {
            write!(out, " {}", name)?;
        }
        writeln!(out)?;
        writeln!(out, "bogomips\t: {}.{:02}", cpu_khz * 2 / 1000, (cpu_khz * 2 / 10) % 100)?;
        writeln!(out, "clflush size\t: {}", self.clflush_size)?;
        writeln!(out, "cache_alignment\t: {}", self.clflush_size)?;
        writeln!(out, "address sizes\t: {} bits physical, {} bits virtual", self.address_bits.0, self.address_bits.1)?;
        writeln!(out, "power management:")?;
        writeln!(out)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::String;

    fn qemu64(apic_id: u32) -> CpuInfo {
        let mut model_name = [0u8; 48];
        let name = b"QEMU Virtual CPU version 2.5+";
        model_name[..name.len()].copy_from_slice(name);
        CpuInfo {
            vendor: *b"AuthenticAMD",
            signature: 0x0006_63,
            model_name,
            model_name_length: name.len(),
            cpuid_level: 13,
            apic_id,
            initial_apic_id: apic_id,
            features: FeatureWords {
                standard_edx: 0x0781_abfd,
                extended_edx: 0x2010_0800,
                synthetic: 0,
                standard_ecx: 0x8080_2001,
                extended_ecx: 0x65,
                structured_ebx: 0,
            },
            address_bits: (40, 48),
            clflush_size: 64,
        }
    }

    #[test]
    fn family_model_stepping() {
        let cpu = qemu64(0);
        assert_eq!((cpu.family(), cpu.model(), cpu.stepping()), (6, 6, 3));
        // An Intel Core (family 6, extended model 9, model 0xe, stepping 0xa): model 158.
        let core = CpuInfo { signature: 0x0009_06ea, ..cpu };
        assert_eq!((core.family(), core.model(), core.stepping()), (6, 158, 10));
        // AMD Zen (base family 0xf + extended 8 = 23).
        let zen = CpuInfo { signature: 0x0080_0f12, ..cpu };
        assert_eq!((zen.family(), zen.model(), zen.stepping()), (23, 1, 2));
    }

    #[test]
    fn paragraph_in_linux_format() {
        let mut out = String::new();
        qemu64(2).write(&mut out, 2, 2_399_998, 4).unwrap();
        let lines: std::vec::Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "processor\t: 2");
        assert_eq!(lines[1], "vendor_id\t: AuthenticAMD");
        assert_eq!(lines[2], "cpu family\t: 6");
        assert_eq!(lines[3], "model\t\t: 6");
        assert_eq!(lines[4], "model name\t: QEMU Virtual CPU version 2.5+");
        assert_eq!(lines[6], "cpu MHz\t\t: 2399.998");
        assert_eq!(lines[11], "apicid\t\t: 2");
        let flags = lines.iter().find(|line| line.starts_with("flags")).unwrap();
        assert_eq!(*flags, "flags\t\t: fpu de pse tsc msr pae mce cx8 apic sep pge cmov pat mmx fxsr sse sse2 syscall nx lm pni cx16 popcnt hypervisor lahf_lm svm abm sse4a");
        assert!(out.ends_with("power management:\n\n"));
    }
}
