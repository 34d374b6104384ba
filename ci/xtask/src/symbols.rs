//! Resolving kernel addresses to symbol names from the ELF, for backtraces on the console.

use std::path::Path;

use object::{Object, ObjectSection, ObjectSymbol, SymbolKind};
use regex::Regex;

/// A sorted table of function symbols.
pub struct SymbolTable {
    symbols: Vec<(u64, u64, String)>,
    /// Demangled names, without hashes, by index into `symbols`.
    names: Vec<String>,
}

impl SymbolTable {
    /// Reads the function symbols of an ELF file.
    pub fn load(elf: &Path) -> Result<SymbolTable, String> {
        let data = std::fs::read(elf).map_err(|e| format!("reading {}: {e}", elf.display()))?;
        let file = object::File::parse(&*data).map_err(|e| e.to_string())?;
        let symbols: Vec<(u64, u64, String)> = file
            .symbols()
            // Functions, and global labels of assembly code (no `.type`: kind unknown) in an
            // executable section, such as the context switch.
            .filter(|s| {
                s.address() != 0
                    && (s.kind() == SymbolKind::Text || (s.kind() == SymbolKind::Unknown && s.is_global() && in_code(&file, s)))
            })
            .filter_map(|s| Some((s.address(), s.size(), s.name().ok()?.to_string())))
            .collect();
        Ok(SymbolTable::from_symbols(symbols))
    }

    /// A table of `(address, size, mangled name)` function symbols.
    pub fn from_symbols(mut symbols: Vec<(u64, u64, String)>) -> SymbolTable {
        symbols.sort_by_key(|s| s.0);
        let names = symbols.iter().map(|(_, _, name)| format!("{:#}", rustc_demangle::demangle(name))).collect();
        SymbolTable { symbols, names }
    }

    /// The start address and demangled name (without hash) of the function holding `address`.
    pub fn function(&self, address: u64) -> Option<(u64, String)> {
        let index = self.symbols.partition_point(|s| s.0 <= address).checked_sub(1)?;
        let (start, size, _) = &self.symbols[index];
        if *size != 0 && address - start >= *size {
            return None;
        }
        Some((*start, self.names[index].clone()))
    }

    /// `name+0xoffset/0xsize` for an address inside a known function. A return address
    /// (`is_return`) is looked up one byte earlier: after a call that ends a function
    /// (a call to a function that never returns) it points at the next function.
    pub fn resolve(&self, address: u64, is_return: bool) -> Option<String> {
        let lookup = if is_return { address.checked_sub(1)? } else { address };
        let index = self.symbols.partition_point(|s| s.0 <= lookup).checked_sub(1)?;
        let (start, size, name) = &self.symbols[index];
        let offset = address - start;
        if *size != 0 && lookup - start >= *size {
            return None;
        }
        let demangled = format!("{:#}", rustc_demangle::demangle(name));
        Some(format!("{demangled}+{offset:#x}/{size:#x}"))
    }
}

/// Whether `symbol` lies in an executable section.
fn in_code(file: &object::File<'_>, symbol: &object::Symbol<'_, '_>) -> bool {
    symbol
        .section_index()
        .and_then(|index| file.section_by_index(index).ok())
        .is_some_and(|section| section.kind() == object::SectionKind::Text)
}

/// Adds symbol names after every `[<0x...>]` address in a console line.
pub struct Symbolizer {
    table: SymbolTable,
    pattern: Regex,
}

impl Symbolizer {
    /// A symbolizer for the kernel ELF at `elf`.
    pub fn new(elf: &Path) -> Result<Symbolizer, String> {
        Ok(Symbolizer { table: SymbolTable::load(elf)?, pattern: Regex::new(r"\[<0x([0-9a-fA-F]+)>\]").unwrap() })
    }

    /// The line with ` name+off/size` appended after each address that resolves, or `None`
    /// when the line has no address.
    pub fn annotate(&self, line: &str) -> Option<String> {
        if !self.pattern.is_match(line) {
            return None;
        }
        // Backtrace frames (`#N [<...>]`) and `lr :` hold return addresses; `pc :` does not.
        let is_return = !line.trim_start().starts_with("pc");
        let annotated = self.pattern.replace_all(line, |captures: &regex::Captures<'_>| {
            let address = u64::from_str_radix(&captures[1], 16).unwrap_or(0);
            match self.table.resolve(address, is_return) {
                Some(name) => format!("{} {}", &captures[0], name),
                None => captures[0].to_string(),
            }
        });
        Some(annotated.into_owned())
    }
}
