//! MNIST and CIFAR-10 readers: the real files of assets/ (linked or fetched by
//! scripts/setup/setup.sh), checked against values known independently, and small corrupt files
//! made here, checked for a one-line error naming the file and the problem.
use fool::datasets::{self, load, DatasetName, Split, TensorDataset};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

fn assets(name: DatasetName) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name.default_dir())
}

fn timed_load(name: DatasetName, split: Split) -> TensorDataset {
    let t = Instant::now();
    let ds = load(name, &assets(name), split).unwrap();
    eprintln!(
        "loaded {name} {split} in {:.3} s",
        t.elapsed().as_secs_f64()
    );
    ds
}

fn all(ds: &TensorDataset) -> Tensor {
    Tensor::arange(ds.len() as i64, (Kind::Int64, Device::Cpu))
}

fn histogram(labels: &Tensor) -> Vec<i64> {
    Vec::<i64>::try_from(labels.bincount::<Tensor>(None, 10)).unwrap()
}

fn gunzip_file(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_end(&mut out)
        .unwrap();
    out
}

// Published per-class counts (e.g. the torchvision / TensorFlow data set cards).
const MNIST_TRAIN_COUNTS: [i64; 10] = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949];
const MNIST_TEST_COUNTS: [i64; 10] = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009];

#[test]
fn mnist_train_real_values() {
    let ds = timed_load(DatasetName::Mnist, Split::Train);
    assert_eq!(ds.len(), 60000);
    assert!(!ds.is_empty());
    assert_eq!(ds.images.size(), vec![60000, 1, 28, 28]);
    assert_eq!(ds.images.kind(), Kind::Uint8);
    assert_eq!(ds.labels.size(), vec![60000]);
    assert_eq!(ds.labels.kind(), Kind::Int64);
    assert_eq!(
        ds.classes,
        (0..10).map(|d| d.to_string()).collect::<Vec<_>>()
    );
    assert_eq!(ds.labels.int64_value(&[0]), 5);
    assert_eq!(histogram(&ds.labels), MNIST_TRAIN_COUNTS);

    // Against the raw bytes, read independently of the library.
    let raw_labels = gunzip_file(&assets(DatasetName::Mnist).join("train-labels-idx1-ubyte.gz"));
    let from_raw: Vec<i64> = raw_labels[8..].iter().map(|&b| b as i64).collect();
    assert_eq!(Vec::<i64>::try_from(&ds.labels).unwrap(), from_raw);
    let raw_images = gunzip_file(&assets(DatasetName::Mnist).join("train-images-idx3-ubyte.gz"));
    let last = ds.images.get(59999).flatten(0, -1);
    assert_eq!(
        Vec::<u8>::try_from(&last).unwrap(),
        &raw_images[16 + 59999 * 784..]
    );
    // Row 14 of the first image (a 5) crosses the stroke.
    let row = Vec::<u8>::try_from(ds.images.get(0).get(0).get(14)).unwrap();
    assert_eq!(row, &raw_images[16 + 14 * 28..16 + 15 * 28]);
    assert!(row.iter().any(|&p| p > 200));

    // Standardization: the whole set has mean ≈ 0 and std ≈ 1.
    let x = ds.normalized(&all(&ds), Device::Cpu);
    assert_eq!(x.size(), vec![60000, 1, 28, 28]);
    assert_eq!(x.kind(), Kind::Float);
    let mean = x.mean(Kind::Double).double_value(&[]);
    let std = x.std(true).double_value(&[]);
    assert!(mean.abs() < 0.01, "mean {mean}");
    assert!((std - 1.0).abs() < 0.01, "std {std}");

    // pixels() of chosen rows, in order.
    let idx = Tensor::from_slice(&[59999i64, 0]);
    let p = ds.pixels(&idx, Device::Cpu);
    assert_eq!(p.size(), vec![2, 1, 28, 28]);
    let max = p.max().double_value(&[]);
    assert!(max <= 1.0 && p.min().double_value(&[]) >= 0.0 && max > 0.9);
    let expected = ds.images.get(0).to_kind(Kind::Float) / 255.0;
    assert!(p.get(1).allclose(&expected, 1e-6, 1e-7, false));
    let l = ds.labels_at(&idx, Device::Cpu);
    assert_eq!(Vec::<i64>::try_from(&l).unwrap(), vec![from_raw[59999], 5]);
}

#[test]
fn mnist_test_real_values() {
    let ds = timed_load(DatasetName::Mnist, Split::Test);
    assert_eq!(ds.len(), 10000);
    assert_eq!(ds.images.size(), vec![10000, 1, 28, 28]);
    assert_eq!(ds.labels.int64_value(&[0]), 7);
    assert_eq!(ds.labels.int64_value(&[1]), 2);
    assert_eq!(histogram(&ds.labels), MNIST_TEST_COUNTS);
}

#[test]
fn cifar10_train_real_values() {
    let ds = timed_load(DatasetName::Cifar10, Split::Train);
    assert_eq!(ds.len(), 50000);
    assert_eq!(ds.images.size(), vec![50000, 3, 32, 32]);
    assert_eq!(ds.images.kind(), Kind::Uint8);
    assert_eq!(ds.labels.kind(), Kind::Int64);
    assert_eq!(ds.classes.len(), 10);
    assert_eq!(ds.classes[6], "frog");
    assert_eq!(ds.classes[0], "airplane");
    assert_eq!(ds.classes[9], "truck");
    assert_eq!(ds.labels.int64_value(&[0]), 6); // frog
    assert_eq!(ds.labels.int64_value(&[1]), 9); // truck
    assert_eq!(histogram(&ds.labels), [5000; 10]);

    // The first record, against the raw bytes: label then R, G, B planes.
    let raw = std::fs::read(assets(DatasetName::Cifar10).join("data_batch_1.bin")).unwrap();
    let first = Vec::<u8>::try_from(ds.images.get(0).flatten(0, -1)).unwrap();
    assert_eq!(raw[0], 6);
    assert_eq!(first, &raw[1..3073]);
    // Record 10000 is the first of data_batch_2.bin.
    let raw2 = std::fs::read(assets(DatasetName::Cifar10).join("data_batch_2.bin")).unwrap();
    assert_eq!(ds.labels.int64_value(&[10000]), raw2[0] as i64);
    // Green channel, row 5, column 7 of that image.
    assert_eq!(
        ds.images.int64_value(&[10000, 1, 5, 7]),
        raw2[1 + 1024 + 5 * 32 + 7] as i64
    );

    // The normalization constants are the per-channel mean and (true) std of these pixels.
    let p = ds.pixels(&all(&ds), Device::Cpu);
    let mean =
        Vec::<f64>::try_from(p.mean_dim([0i64, 2, 3].as_slice(), false, Kind::Double)).unwrap();
    let std = Vec::<f64>::try_from(p.to_kind(Kind::Double).std_dim(
        [0i64, 2, 3].as_slice(),
        true,
        false,
    ))
    .unwrap();
    for c in 0..3 {
        let (m, s) = (
            DatasetName::Cifar10.mean()[c],
            DatasetName::Cifar10.std()[c],
        );
        assert!(
            (mean[c] - m).abs() < 1e-3,
            "channel {c}: mean {} vs {m}",
            mean[c]
        );
        assert!(
            (std[c] - s).abs() < 1e-3,
            "channel {c}: std {} vs {s}",
            std[c]
        );
    }
    drop(p);
    let x = ds.normalized(
        &Tensor::arange_start(0, 5000, (Kind::Int64, Device::Cpu)),
        Device::Cpu,
    );
    assert_eq!(x.size(), vec![5000, 3, 32, 32]);
    let m = x.mean(Kind::Double).double_value(&[]);
    assert!(m.abs() < 0.05, "mean {m}");
}

#[test]
fn cifar10_test_real_values() {
    let ds = timed_load(DatasetName::Cifar10, Split::Test);
    assert_eq!(ds.len(), 10000);
    assert_eq!(ds.images.size(), vec![10000, 3, 32, 32]);
    assert_eq!(ds.labels.int64_value(&[0]), 3); // cat
    assert_eq!(histogram(&ds.labels), [1000; 10]);
}

#[test]
fn dataset_names() {
    for (s, d) in [
        ("mnist", DatasetName::Mnist),
        ("MNIST", DatasetName::Mnist),
        ("cifar10", DatasetName::Cifar10),
        ("cifar-10", DatasetName::Cifar10),
        ("CIFAR-10", DatasetName::Cifar10),
    ] {
        assert_eq!(s.parse::<DatasetName>().unwrap(), d);
    }
    let err = "imagenet".parse::<DatasetName>().unwrap_err();
    assert!(
        matches!(&err, fool::Error::Invalid { field, .. } if field == "dataset"),
        "{err:?}"
    );
    let e = err.to_string();
    assert!(e.contains("dataset") && e.contains("imagenet"), "{e}");
    assert!(e.contains("mnist") && e.contains("cifar10"), "{e}");
    assert_eq!(DatasetName::Cifar10.to_string(), "cifar10");
    assert_eq!(
        DatasetName::Mnist
            .to_string()
            .parse::<DatasetName>()
            .unwrap(),
        DatasetName::Mnist
    );
    assert_eq!(
        serde_json::to_string(&DatasetName::Cifar10).unwrap(),
        "\"cifar10\""
    );
    assert_eq!(
        serde_json::from_str::<DatasetName>("\"mnist\"").unwrap(),
        DatasetName::Mnist
    );
    assert_eq!(DatasetName::Mnist.default_dir(), Path::new("assets/mnist"));
    assert_eq!(
        DatasetName::Cifar10.default_dir(),
        Path::new("assets/cifar10")
    );
    assert_eq!(
        (DatasetName::Mnist.channels(), DatasetName::Mnist.side()),
        (1, 28)
    );
    assert_eq!(
        (DatasetName::Cifar10.channels(), DatasetName::Cifar10.side()),
        (3, 32)
    );
    assert_eq!(DatasetName::Cifar10.num_classes(), 10);
    assert_eq!(DatasetName::Cifar10.mean().len(), 3);
    assert_eq!(DatasetName::Mnist.std(), vec![0.3081]);
}

// ---- small files made here --------------------------------------------------------------

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn idx_images(magic: u32, n: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    for v in [magic, n, rows, cols] {
        b.extend_from_slice(&v.to_be_bytes());
    }
    b.extend_from_slice(pixels);
    b
}

fn idx_labels(magic: u32, labels: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&magic.to_be_bytes());
    b.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    b.extend_from_slice(labels);
    b
}

/// Write a small MNIST test split (gzipped) into `dir`: `n` images, image i all pixels = i+1.
fn write_mnist(dir: &Path, images: &[u8], labels: &[u8]) {
    std::fs::write(dir.join("t10k-images-idx3-ubyte.gz"), gz(images)).unwrap();
    std::fs::write(dir.join("t10k-labels-idx1-ubyte.gz"), gz(labels)).unwrap();
}

fn three_images() -> Vec<u8> {
    let pixels: Vec<u8> = (0..3 * 784)
        .map(|i| (i / 784 * 100 + i % 7) as u8)
        .collect();
    idx_images(2051, 3, 28, 28, &pixels)
}

fn mnist_err(dir: &Path) -> String {
    let e = load(DatasetName::Mnist, dir, Split::Test)
        .unwrap_err()
        .to_string();
    assert!(!e.contains('\n'), "one line: {e}");
    e
}

fn cifar_err(dir: &Path, split: Split) -> String {
    let e = load(DatasetName::Cifar10, dir, split)
        .unwrap_err()
        .to_string();
    assert!(!e.contains('\n'), "one line: {e}");
    e
}

#[test]
fn small_mnist_gz_and_raw() {
    let d = tempfile::tempdir().unwrap();
    write_mnist(d.path(), &three_images(), &idx_labels(2049, &[4, 0, 9]));
    let ds = load(DatasetName::Mnist, d.path(), Split::Test).unwrap();
    assert_eq!(
        (ds.len(), ds.split, ds.name),
        (3, Split::Test, DatasetName::Mnist)
    );
    assert_eq!(Vec::<i64>::try_from(&ds.labels).unwrap(), vec![4, 0, 9]);
    assert_eq!(ds.images.int64_value(&[2, 0, 0, 3]), 203);
    assert_eq!(ds.images.int64_value(&[1, 0, 27, 27]), 100 + 783 % 7);
    let idx = Tensor::from_slice(&[2i64, 1]);
    let p = ds.pixels(&idx, Device::Cpu);
    assert!((p.double_value(&[0, 0, 0, 3]) - 203.0 / 255.0).abs() < 1e-6);
    let n = ds.normalized(&idx, Device::Cpu);
    let want = (100.0 / 255.0 - 0.1307) / 0.3081;
    assert!((n.double_value(&[1, 0, 0, 0]) - want).abs() < 1e-5);
    // int32 indices are accepted too.
    let l = ds.labels_at(&idx.to_kind(Kind::Int), Device::Cpu);
    assert_eq!(Vec::<i64>::try_from(&l).unwrap(), vec![9, 0]);

    // Already decompressed files (no .gz) are read the same.
    let r = tempfile::tempdir().unwrap();
    std::fs::write(r.path().join("t10k-images-idx3-ubyte"), three_images()).unwrap();
    std::fs::write(
        r.path().join("t10k-labels-idx1-ubyte"),
        idx_labels(2049, &[4, 0, 9]),
    )
    .unwrap();
    let raw = load(DatasetName::Mnist, r.path(), Split::Test).unwrap();
    assert!(raw.images.equal(&ds.images) && raw.labels.equal(&ds.labels));
}

#[test]
fn mnist_errors() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let images = dir.join("t10k-images-idx3-ubyte.gz");
    let labels = dir.join("t10k-labels-idx1-ubyte.gz");
    let good_labels = idx_labels(2049, &[4, 0, 9]);

    // Missing directory, then a missing file.
    let e = mnist_err(&dir.join("nope"));
    assert!(
        e.contains("nope")
            && e.contains("no such directory")
            && e.contains("the data folder must be a directory holding the"),
        "{e}"
    );
    assert!(e.contains("train-images-idx3-ubyte.gz"), "{e}");
    std::fs::write(&images, gz(&three_images())).unwrap();
    let e = mnist_err(dir);
    assert!(
        e.contains("t10k-labels-idx1-ubyte.gz: missing")
            && e.contains("the data folder must be a directory holding the"),
        "{e}"
    );

    // Wrong magic: a label file where the images should be.
    write_mnist(dir, &good_labels, &good_labels);
    let e = mnist_err(dir);
    assert!(e.contains(&images.display().to_string()), "{e}");
    assert!(
        e.contains("wrong IDX magic 0x00000801, expected 2051 (images)"),
        "{e}"
    );
    write_mnist(dir, &three_images(), &three_images());
    let e = mnist_err(dir);
    assert!(
        e.contains("t10k-labels")
            && e.contains("wrong IDX magic 0x00000803, expected 2049 (labels)"),
        "{e}"
    );

    // Truncated image data, and a header cut short.
    let mut short = three_images();
    short.truncate(16 + 2 * 784 + 10);
    write_mnist(dir, &short, &good_labels);
    let e = mnist_err(dir);
    assert!(
        e.contains("t10k-images") && e.contains("truncated: 1594 bytes, expected 2368"),
        "{e}"
    );
    write_mnist(dir, &three_images()[..10], &good_labels);
    assert!(mnist_err(dir).contains("truncated: 10 bytes, expected at least 16"));
    write_mnist(dir, &three_images(), &good_labels[..9]);
    let e = mnist_err(dir);
    assert!(
        e.contains("t10k-labels") && e.contains("truncated: 9 bytes, expected 11"),
        "{e}"
    );
    let mut long = three_images();
    long.push(0);
    write_mnist(dir, &long, &good_labels);
    assert!(mnist_err(dir).contains("trailing data"));

    // Wrong image size.
    write_mnist(
        dir,
        &idx_images(2051, 1, 27, 28, &[0; 27 * 28]),
        &idx_labels(2049, &[1]),
    );
    assert!(mnist_err(dir).contains("images are 27×28, expected 28×28"));

    // Count mismatch and label out of range.
    write_mnist(dir, &three_images(), &idx_labels(2049, &[4, 0]));
    let e = mnist_err(dir);
    assert!(
        e.contains("t10k-images") && e.contains("3 images but") && e.contains("2 labels"),
        "{e}"
    );
    write_mnist(dir, &three_images(), &idx_labels(2049, &[4, 10, 9]));
    let e = mnist_err(dir);
    assert!(
        e.contains("t10k-labels") && e.contains("label 10 of item 1 is out of range"),
        "{e}"
    );

    // Bad gzip: not gzip at all, a cut stream, a damaged stream (checksum).
    std::fs::write(&labels, gz(&good_labels)).unwrap();
    std::fs::write(&images, three_images()).unwrap();
    let e = mnist_err(dir);
    assert!(
        e.contains("t10k-images-idx3-ubyte.gz: corrupt gzip: not a gzip file"),
        "{e}"
    );
    let z = gz(&three_images());
    std::fs::write(&images, &z[..z.len() / 2]).unwrap();
    let e = mnist_err(dir);
    assert!(e.contains("t10k-images-idx3-ubyte.gz: corrupt gzip"), "{e}");
    let mut bad = z.clone();
    let crc_at = bad.len() - 8;
    bad[crc_at] ^= 0xff;
    std::fs::write(&images, &bad).unwrap();
    let e = mnist_err(dir);
    assert!(e.contains("t10k-images-idx3-ubyte.gz: corrupt gzip"), "{e}");
    let mut bad = z;
    bad[20] ^= 0x55;
    std::fs::write(&images, &bad).unwrap();
    let e = mnist_err(dir);
    assert!(
        e.contains("t10k-images-idx3-ubyte.gz") && e.contains("gzip"),
        "{e}"
    );
}

/// A CIFAR record: label, then R plane = 10+i, G = 20+i, B = 30+i, with pixel (row 3, col 4)
/// of each plane marked 200+plane.
fn cifar_record(label: u8, i: u8) -> Vec<u8> {
    let mut r = vec![label];
    for plane in 0..3u8 {
        let mut p = vec![10 * (plane + 1) + i; 1024];
        p[3 * 32 + 4] = 200 + plane;
        r.extend_from_slice(&p);
    }
    r
}

#[test]
fn small_cifar10() {
    let d = tempfile::tempdir().unwrap();
    let mut b = cifar_record(6, 0);
    b.extend(cifar_record(9, 1));
    std::fs::write(d.path().join("test_batch.bin"), &b).unwrap();
    let ds = load(DatasetName::Cifar10, d.path(), Split::Test).unwrap();
    assert_eq!(ds.len(), 2);
    assert_eq!(ds.images.size(), vec![2, 3, 32, 32]);
    assert_eq!(Vec::<i64>::try_from(&ds.labels).unwrap(), vec![6, 9]);
    assert_eq!(ds.images.int64_value(&[1, 0, 0, 0]), 11);
    assert_eq!(ds.images.int64_value(&[1, 1, 31, 31]), 21);
    assert_eq!(ds.images.int64_value(&[0, 2, 0, 0]), 30);
    assert_eq!(ds.images.int64_value(&[1, 2, 3, 4]), 202);
    assert_eq!(ds.images.int64_value(&[1, 2, 4, 3]), 31);
    // No batches.meta.txt: the standard names.
    assert_eq!(ds.classes[6], "frog");
    let n = ds.normalized(&Tensor::from_slice(&[1i64]), Device::Cpu);
    let want = (21.0 / 255.0 - 0.4822) / 0.2435;
    assert!((n.double_value(&[0, 1, 0, 0]) - want).abs() < 1e-5);
    // With a meta file, its names.
    let names = "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n";
    std::fs::write(d.path().join("batches.meta.txt"), names).unwrap();
    let ds = load(DatasetName::Cifar10, d.path(), Split::Test).unwrap();
    assert_eq!(ds.classes[6], "g");
}

#[test]
fn cifar10_errors() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let test = dir.join("test_batch.bin");

    let e = cifar_err(&dir.join("nope"), Split::Test);
    assert!(
        e.contains("no such directory")
            && e.contains("the data folder must be a directory holding the")
            && e.contains("data_batch_1.bin"),
        "{e}"
    );
    let e = cifar_err(dir, Split::Test);
    assert!(
        e.contains("test_batch.bin: missing")
            && e.contains("the data folder must be a directory holding the"),
        "{e}"
    );
    std::fs::write(dir.join("data_batch_1.bin"), cifar_record(0, 0)).unwrap();
    let e = cifar_err(dir, Split::Train);
    assert!(e.contains("data_batch_2.bin: missing"), "{e}");

    // Wrong record length / truncated.
    let mut b = cifar_record(1, 0);
    b.extend(cifar_record(2, 0));
    b.extend([0u8; 5]);
    std::fs::write(&test, &b).unwrap();
    let e = cifar_err(dir, Split::Test);
    assert!(
        e.contains("test_batch.bin")
            && e.contains("truncated: 6151 bytes")
            && e.contains("3073-byte records"),
        "{e}"
    );
    std::fs::write(&test, []).unwrap();
    assert!(cifar_err(dir, Split::Test).contains("truncated: 0 bytes, expected 30730000"));
    let mut big = vec![0u8; 10_000 * 3073];
    big.extend([1u8; 2]);
    std::fs::write(&test, &big).unwrap();
    let e = cifar_err(dir, Split::Test);
    assert!(
        e.contains("wrong length: 30730002 bytes, expected 30730000"),
        "{e}"
    );

    // Label out of range.
    let mut b = cifar_record(1, 0);
    b.extend(cifar_record(10, 0));
    std::fs::write(&test, &b).unwrap();
    let e = cifar_err(dir, Split::Test);
    assert!(
        e.contains("test_batch.bin") && e.contains("label 10 of record 1 is out of range"),
        "{e}"
    );

    // A meta file without ten names.
    std::fs::write(&test, cifar_record(1, 0)).unwrap();
    std::fs::write(dir.join("batches.meta.txt"), "cat\ndog\n").unwrap();
    let e = cifar_err(dir, Split::Test);
    assert!(
        e.contains("batches.meta.txt") && e.contains("2 class names, expected 10"),
        "{e}"
    );
}

#[test]
fn folder_reader_still_exported() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("labels.csv"), "file,index\na.png,3\n").unwrap();
    let items: Vec<datasets::Item> = datasets::image_folder(d.path(), None).unwrap();
    assert_eq!(items[0].label, 3);
}
