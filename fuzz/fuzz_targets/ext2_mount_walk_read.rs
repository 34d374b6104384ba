//! Fuzz target: an arbitrary image mounted as ext2, walked, read and changed (`hinoki_kernel::fs::ext2::exercise`); any panic or hang is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|image: &[u8]| {
    hinoki_kernel::fs::ext2::exercise::exercise_image(image);
});
