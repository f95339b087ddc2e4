//! The IDX parser and the MNIST loader: valid files, each kind of malformed file (each a
//! distinct error naming the file), the committed corpus of malformed files, and the real data.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};

use common::shared_mnist;
use ferrograd::data::idx::{self, decode, encode, IdxError, MAX_DECODED_BYTES};
use ferrograd::data::mnist::{TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS};
use ferrograd::data::{Mnist, Split};
use ferrograd::Error;

fn header(ndims_and_sizes: &[u32]) -> Vec<u8> {
    let mut bytes = vec![0, 0, 0x08, ndims_and_sizes.len() as u8];
    for size in ndims_and_sizes {
        bytes.extend_from_slice(&size.to_be_bytes());
    }
    bytes
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[test]
fn valid_files_decode_plain_and_gzipped() {
    let data: Vec<u8> = (0..2 * 3 * 4).map(|i| i as u8).collect();
    let bytes = encode(&[2, 3, 4], &data);
    assert_eq!(&bytes[..4], &[0, 0, 8, 3], "magic 0x00000803");
    for input in [bytes.clone(), gzip(&bytes)] {
        let array = decode(&input).unwrap();
        assert_eq!(array.dims, [2, 3, 4]);
        assert_eq!(array.data, data);
    }
}

/// The header alone, for a writer that streams the data after it (`--samples-out`): the
/// bytes written by hand above, and with the data after them, a file that decodes.
#[test]
fn a_header_written_alone_starts_a_file_that_decodes() {
    assert_eq!(idx::header(&[3, 28, 28]), header(&[3, 28, 28]));
    assert_eq!(idx::header(&[70_000]), header(&[70_000]));
    let data: Vec<u8> = (0..3 * 28 * 28).map(|i| (i * 7) as u8).collect();
    let mut bytes = idx::header(&[3, 28, 28]);
    bytes.extend_from_slice(&data);
    assert_eq!(bytes, encode(&[3, 28, 28], &data));
    let array = decode(&bytes).unwrap();
    assert_eq!((array.dims, array.data), (vec![3, 28, 28], data));
}

/// Each malformation is its own error, plain or gzipped, with a message that says what is
/// wrong in the file's terms.
#[test]
fn each_malformation_is_its_own_error() {
    let cases: Vec<(Vec<u8>, IdxError, &str)> = vec![
        (
            vec![],
            IdxError::HeaderTooShort {
                needed: 4,
                found: 0,
            },
            "the file is empty",
        ),
        (
            vec![0, 0],
            IdxError::HeaderTooShort {
                needed: 4,
                found: 2,
            },
            "header needs 4 bytes, the file has 2",
        ),
        (
            [&header(&[10, 28, 28])[..8]].concat(),
            IdxError::HeaderTooShort {
                needed: 16,
                found: 8,
            },
            "header needs 16 bytes, the file has 8",
        ),
        (
            b"<!DOCTYPE html>".to_vec(),
            IdxError::BadMagic { magic: 0x3c21_444f },
            "magic number 0x3c21444f does not start with two zero bytes",
        ),
        (
            vec![0, 0, 0x0d, 1, 0, 0, 0, 0],
            IdxError::UnsupportedType { code: 0x0d },
            "element type 0x0d is not unsigned byte (0x08)",
        ),
        (
            vec![0, 0, 8, 0],
            IdxError::NoDimensions,
            "the header declares zero dimensions",
        ),
        (
            [header(&[10, 28, 28]), vec![0; 100]].concat(),
            IdxError::Truncated {
                expected: 7840,
                found: 100,
            },
            "truncated: the header claims 7840 bytes of data, the file holds 100",
        ),
        (
            [header(&[3]), vec![1, 2, 3, 4]].concat(),
            IdxError::TrailingBytes {
                expected: 3,
                found: 4,
            },
            "1 byte past the end of the data: the header claims 3 bytes of data, the file \
             holds 4",
        ),
    ];
    for (bytes, expected, message) in cases {
        assert_eq!(decode(&bytes), Err(expected.clone()));
        assert_eq!(expected.to_string(), message);
        assert_eq!(decode(&gzip(&bytes)), Err(expected), "the same, gzipped");
    }
}

/// A 1 KB file whose header claims 10¹² images fails at once, plain or gzipped, without
/// allocating for the claim.
#[test]
fn a_header_claiming_terabytes_fails_before_allocating() {
    let bytes = [header(&[1_000_000_000, 1000, 784]), vec![0; 1000]].concat();
    let too_large = IdxError::TooLarge {
        dims: vec![1_000_000_000, 1000, 784],
    };
    assert_eq!(decode(&bytes), Err(too_large.clone()));
    assert_eq!(decode(&gzip(&bytes)), Err(too_large));
    // Just under the cap is no excuse either: the data must actually be there.
    let claim = (MAX_DECODED_BYTES / 784) as u32;
    let bytes = [header(&[claim, 28, 28]), vec![0; 1000]].concat();
    assert!(matches!(
        decode(&bytes),
        Err(IdxError::Truncated { found: 1000, .. })
    ));
    assert!(matches!(
        decode(&gzip(&bytes)),
        Err(IdxError::Truncated { found: 1000, .. })
    ));
}

#[test]
fn corrupt_gzip_is_reported() {
    let mut compressed = gzip(&[header(&[5]), vec![1; 5]].concat());
    let crc_at = compressed.len() - 8;
    compressed[crc_at] ^= 0xff;
    assert!(matches!(decode(&compressed), Err(IdxError::Gzip { .. })));
    assert!(matches!(
        decode(&[0x1f, 0x8b, 0xde, 0xad]),
        Err(IdxError::Gzip { .. })
    ));
    // Cut off before its trailer, a highly compressible stream still inflates to the full
    // payload: only the CRC-32 and length at its end reveal the damage.
    let full = gzip(&[header(&[100, 28, 28]), vec![7; 78_400]].concat());
    for cut in [full.len() - 1, full.len() - 8, full.len() / 2] {
        assert!(
            matches!(decode(&full[..cut]), Err(IdxError::Gzip { .. })),
            "cut at {cut}"
        );
    }
}

/// Every file in the committed corpus of malformed inputs (also the fuzzer's seed corpus) is
/// rejected with an error, never a panic.
#[test]
fn the_malformed_corpus_is_rejected() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/corpus/idx_malformed");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let result = decode(&bytes).map(|array| array.dims);
        assert!(
            result.is_err(),
            "{} was accepted with dims {result:?}",
            path.display()
        );
        count += 1;
    }
    assert!(count >= 15, "the corpus has {count} files");
}

/// A directory holding the four MNIST files, built from given images and labels.
struct FakeMnist {
    dir: PathBuf,
}

impl FakeMnist {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("ferrograd-idx-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        FakeMnist { dir }
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn with_split(
        name: &str,
        images: (&[usize], &[u8]),
        labels: &[u8],
    ) -> (Self, PathBuf, PathBuf) {
        let fake = FakeMnist::new(name);
        let images = fake.write(
            &format!("{TRAIN_IMAGES}.gz"),
            &gzip(&encode(images.0, images.1)),
        );
        let labels = fake.write(TRAIN_LABELS, &encode(&[labels.len()], labels));
        (fake, images, labels)
    }
}

impl Drop for FakeMnist {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn mnist_loads_a_valid_split_in_mixed_forms() {
    let (fake, ..) = FakeMnist::with_split("valid", (&[2, 28, 28], &[7; 2 * 784]), &[3, 9]);
    let mnist = Mnist::load(&fake.dir, Split::Train).unwrap();
    assert_eq!((mnist.len(), mnist.labels.as_slice()), (2, &[3u8, 9][..]));
    assert_eq!(mnist.images.len(), 2 * 784);
}

#[test]
fn mnist_errors_name_the_file() {
    let (fake, images, _) = FakeMnist::with_split("size", (&[2, 20, 20], &[0; 800]), &[1, 2]);
    let err = Mnist::load(&fake.dir, Split::Train).unwrap_err();
    assert!(
        matches!(&err, Error::MnistImageSize { path, dims } if *path == images && dims == &[2, 20, 20])
    );
    assert!(
        err.to_string().contains(&images.display().to_string()),
        "{err}"
    );

    let (fake, images, labels) =
        FakeMnist::with_split("count", (&[2, 28, 28], &[0; 1568]), &[1, 2, 3]);
    let err = Mnist::load(&fake.dir, Split::Train).unwrap_err();
    assert!(
        matches!(
            &err,
            Error::MnistCountMismatch {
                image_count: 2,
                label_count: 3,
                ..
            }
        ),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.contains(&images.display().to_string())
            && message.contains(&labels.display().to_string())
    );

    let (fake, _, labels) = FakeMnist::with_split("label", (&[1, 28, 28], &[0; 784]), &[10]);
    let err = Mnist::load(&fake.dir, Split::Train).unwrap_err();
    assert!(
        matches!(&err, Error::MnistLabel { path, index: 0, value: 10 } if *path == labels),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        format!("{}: label 0 is 10, outside 0–9", labels.display())
    );

    let (fake, _, _) = FakeMnist::with_split("kind", (&[1, 28, 28], &[0; 784]), &[1]);
    let swapped = fake.write(TRAIN_LABELS, &encode(&[1, 28, 28], &[0; 784]));
    let err = Mnist::load(&fake.dir, Split::Train).unwrap_err();
    assert!(
        matches!(&err, Error::MnistKind { path, .. } if *path == swapped),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "{}: expected an IDX file of labels (1 dimension), found one with dims [1, 28, 28]",
            swapped.display()
        )
    );

    let (fake, images, _) = FakeMnist::with_split("truncated", (&[1, 28, 28], &[0; 784]), &[1]);
    std::fs::write(&images, &encode(&[1, 28, 28], &[0; 784])[..500]).unwrap();
    let err = Mnist::load(&fake.dir, Split::Train).unwrap_err();
    assert!(
        matches!(&err, Error::Idx { path, source: IdxError::Truncated { .. } } if *path == images),
        "{err}"
    );
    assert!(err.to_string().contains("truncated"), "{err}");

    let fake = FakeMnist::new("missing");
    let err = Mnist::load(&fake.dir, Split::Test).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: MNIST file {TEST_IMAGES} (or {TEST_IMAGES}.gz) not found",
            fake.dir.display()
        )
    );
    assert!(matches!(err, Error::MnistMissing { name, .. } if name == TEST_IMAGES));
    fake.write(TEST_IMAGES, &encode(&[1, 28, 28], &[0; 784]));
    let err = Mnist::load(&fake.dir, Split::Test).unwrap_err();
    assert!(matches!(err, Error::MnistMissing { name, .. } if name == TEST_LABELS));
}

#[test]
fn the_real_mnist_loads_with_its_known_contents() {
    let Some(dir) = shared_mnist() else { return };
    let train = Mnist::load(&dir, Split::Train).unwrap();
    let test = Mnist::load(&dir, Split::Test).unwrap();
    assert_eq!((train.len(), test.len()), (60_000, 10_000));
    assert_eq!(train.labels[..8], [5, 0, 4, 1, 9, 2, 1, 3]);
    assert_eq!(test.labels[..8], [7, 2, 1, 0, 4, 1, 4, 9]);
    let mut counts = [0usize; 10];
    train
        .labels
        .iter()
        .for_each(|&l| counts[usize::from(l)] += 1);
    assert_eq!(
        counts,
        [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    );
    assert_eq!(train.images.len(), 60_000 * 784);
    assert!(train.images.contains(&255) && train.images.contains(&0));
}
