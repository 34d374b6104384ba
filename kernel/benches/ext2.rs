//! Host benchmark of Hinoki's ext2 read path against the `ext4-view` crate, both reading the same `mke2fs` image from memory in the same run.
//!
//! Run: `cargo xtask bench fs` or `cargo bench -p hinoki-kernel --bench ext2` (needs
//! `mke2fs`). The image (4 KiB blocks) holds a 16 MiB file, 1000 files of 4 KiB and a tree
//! of 110 directories with 500 small files. Hinoki reads through the VFS and the page cache
//! over a RAM disk, cold (fresh mount and cache each iteration) and warm (pages cached);
//! ext4-view reads the image bytes directly. Results: `docs/benchmarks-fs.md`.

use std::hint::black_box;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hinoki_kernel::block::RamDisk;
use hinoki_kernel::fs::ext2::Ext2;
use hinoki_kernel::fs::page_cache::PageCache;
use hinoki_kernel::fs::vfs::{Location, Vfs};

const LARGE: usize = 16 << 20;
const SMALL_FILES: usize = 1000;
const SMALL: usize = 4096;
/// The walked tree: /walk/dNN/eNN/fN, 10 x 10 directories of 5 files.
const WALK_FANOUT: usize = 10;
const WALK_FILES: usize = 5;

/// Walks the whole tree below `path` through Hinoki's VFS, `lstat`ing every entry;
/// returns the number of entries seen (without `.` and `..`).
fn walk_hinoki(vfs: &Vfs, path: &str) -> usize {
    let mut count = 0;
    for entry in vfs.read_directory(None, path).unwrap() {
        if entry.name == "." || entry.name == ".." {
            continue;
        }
        let child = if path == "/" { format!("/{}", entry.name) } else { format!("{path}/{}", entry.name) };
        let metadata = vfs.lstat(None, &child).unwrap();
        count += 1;
        if metadata.is_directory() {
            count += walk_hinoki(vfs, &child);
        }
    }
    count
}

/// The same walk with each entry looked at relative to its directory, as `ls -lR` does with
/// `fstatat(directory_fd, name, AT_SYMLINK_NOFOLLOW)`: `Vfs::lstat` with the directory's
/// location as the starting point and the entry's name as the path.
fn walk_hinoki_relative(vfs: &Vfs, directory: Location) -> usize {
    let mut count = 0;
    for entry in vfs.read_directory(Some(directory), ".").unwrap() {
        if entry.name == "." || entry.name == ".." {
            continue;
        }
        let metadata = vfs.lstat(Some(directory), &entry.name).unwrap();
        count += 1;
        if metadata.is_directory() {
            count += walk_hinoki_relative(vfs, vfs.resolve(Some(directory), &entry.name, false).unwrap());
        }
    }
    count
}

/// The same walk through ext4-view: `read_dir` and each entry's metadata.
fn walk_ext4(ext4: &ext4_view::Ext4, path: ext4_view::PathBuf) -> usize {
    let mut count = 0;
    for entry in ext4.read_dir(&path).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name.as_str() == Ok(".") || name.as_str() == Ok("..") {
            continue;
        }
        let metadata = entry.metadata().unwrap();
        count += 1;
        if metadata.is_dir() {
            count += walk_ext4(ext4, entry.path());
        }
    }
    count
}

fn contents(length: usize, seed: u32) -> Vec<u8> {
    let mut state = seed | 1;
    (0..length)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect()
}

fn build_image() -> Vec<u8> {
    let scratch = std::env::temp_dir().join(format!("hinoki-ext2-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let tree: PathBuf = scratch.join("tree");
    std::fs::create_dir_all(tree.join("small")).unwrap();
    std::fs::write(tree.join("large.bin"), contents(LARGE, 1)).unwrap();
    for index in 0..SMALL_FILES {
        std::fs::write(tree.join(format!("small/{index:04}")), contents(SMALL, index as u32 + 2)).unwrap();
    }
    for outer in 0..WALK_FANOUT {
        for inner in 0..WALK_FANOUT {
            let directory = tree.join(format!("walk/d{outer:02}/e{inner:02}"));
            std::fs::create_dir_all(&directory).unwrap();
            for file in 0..WALK_FILES {
                std::fs::write(directory.join(format!("f{file}")), b"x").unwrap();
            }
        }
    }
    let image = scratch.join("bench.ext2");
    let status = Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext2", "-b", "4096", "-d"])
        .arg(&tree)
        .arg(&image)
        .arg("56M")
        .env("MKE2FS_CONFIG", "/dev/null")
        .status()
        .expect("mke2fs is needed for this benchmark (apt-get install e2fsprogs)");
    assert!(status.success());
    let bytes = std::fs::read(&image).unwrap();
    let _ = std::fs::remove_dir_all(&scratch);
    bytes
}

fn mount(disk: &Arc<RamDisk>) -> Vfs {
    let cache = PageCache::new(disk.clone(), 16384);
    let ext2 = Ext2::mount(cache, true, || 0).expect("mount");
    let vfs = Vfs::new();
    vfs.mount("ram0", "/", ext2, true).unwrap();
    vfs
}

fn benches(criterion: &mut Criterion) {
    let image = build_image();
    let disk = Arc::new(RamDisk::from_vec("ram0", 512, image.clone()));
    let warm = mount(&disk);
    let ext4 = ext4_view::Ext4::load(Box::new(image)).expect("ext4-view loads the image");
    let small_paths: Vec<String> = (0..SMALL_FILES).map(|index| format!("/small/{index:04}")).collect();
    assert_eq!(warm.read_to_end(None, "/large.bin").unwrap(), ext4.read("/large.bin").unwrap());

    // What every cold iteration pays before reading: a fresh page cache, `Ext2::mount` and
    // the VFS mount (and dropping the previous iteration's cache).
    let mut group = criterion.benchmark_group("ext2_mount");
    group.sample_size(10).measurement_time(Duration::from_secs(2));
    group.bench_function("hinoki_cold", |bencher| bencher.iter(|| black_box(mount(&disk).root().unwrap())));
    group.finish();

    let mut group = criterion.benchmark_group("ext2_read_16MiB_file");
    group.throughput(Throughput::Bytes(LARGE as u64)).sample_size(10).measurement_time(Duration::from_secs(3));
    group.bench_function("hinoki_cold", |bencher| bencher.iter(|| black_box(mount(&disk).read_to_end(None, "/large.bin").unwrap().len())));
    group.bench_function("hinoki_warm", |bencher| bencher.iter(|| black_box(warm.read_to_end(None, "/large.bin").unwrap().len())));
    group.bench_function("ext4_view", |bencher| bencher.iter(|| black_box(ext4.read("/large.bin").unwrap().len())));
    group.finish();

    let mut group = criterion.benchmark_group("ext2_read_1000_small_files");
    group.throughput(Throughput::Bytes((SMALL_FILES * SMALL) as u64)).sample_size(10).measurement_time(Duration::from_secs(3));
    group.bench_function("hinoki_cold", |bencher| {
        bencher.iter(|| {
            let vfs = mount(&disk);
            small_paths.iter().map(|path| vfs.read_to_end(None, path).unwrap().len()).sum::<usize>()
        })
    });
    group.bench_function("hinoki_warm", |bencher| {
        bencher.iter(|| small_paths.iter().map(|path| warm.read_to_end(None, path).unwrap().len()).sum::<usize>())
    });
    group.bench_function("ext4_view", |bencher| {
        bencher.iter(|| small_paths.iter().map(|path| ext4.read(path.as_str()).unwrap().len()).sum::<usize>())
    });
    group.finish();

    let ext4_root = || ext4_view::PathBuf::try_from("/").unwrap();
    let entries = walk_hinoki(&warm, "/");
    assert_eq!(entries, walk_ext4(&ext4, ext4_root()), "both walks see the same tree");
    let mut group = criterion.benchmark_group(format!("ext2_walk_tree_{entries}_entries"));
    group.throughput(Throughput::Elements(entries as u64)).sample_size(10).measurement_time(Duration::from_secs(3));
    group.bench_function("hinoki_cold", |bencher| bencher.iter(|| black_box(walk_hinoki(&mount(&disk), "/"))));
    group.bench_function("hinoki_warm", |bencher| bencher.iter(|| black_box(walk_hinoki(&warm, "/"))));
    let root = warm.root().unwrap();
    assert_eq!(walk_hinoki_relative(&warm, root), entries, "both Hinoki walks see the same tree");
    group.bench_function("hinoki_warm_relative", |bencher| bencher.iter(|| black_box(walk_hinoki_relative(&warm, root))));
    group.bench_function("ext4_view", |bencher| bencher.iter(|| black_box(walk_ext4(&ext4, ext4_root()))));
    group.finish();
}

criterion_group!(ext2, benches);
criterion_main!(ext2);
