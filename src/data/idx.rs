//! The IDX format, in which MNIST is distributed.
//!
//! ```text
//! offset 0: 0x00 0x00   always zero
//! offset 2: type code   0x08 = unsigned byte (the only type MNIST uses, and the only one we read)
//! offset 3: ndims       1 for labels (magic 0x00000801), 3 for images (magic 0x00000803)
//! offset 4: ndims × u32 big-endian sizes
//! then      the product of the sizes, in bytes, row-major
//! ```
//!
//! [`decode`] validates the header against the length of the data before it allocates for the
//! payload, so a 1 KB file claiming 10¹² images fails at once, and a gzip stream is never
//! inflated beyond what its header claims (nor beyond [`MAX_DECODED_BYTES`]).

use std::fmt;
use std::io::Read;

use flate2::read::GzDecoder;

/// The magic number of a 1-D unsigned-byte IDX file (MNIST labels).
pub const MAGIC_LABELS: u32 = 0x0000_0801;
/// The magic number of a 3-D unsigned-byte IDX file (MNIST images).
pub const MAGIC_IMAGES: u32 = 0x0000_0803;
/// The largest decoded file accepted: MNIST's largest is 47 MB.
pub const MAX_DECODED_BYTES: usize = 1 << 30;

const TYPE_UNSIGNED_BYTE: u8 = 0x08;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// An n-dimensional array of bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxArray {
    /// The size of each dimension, outermost first (`[60000, 28, 28]` for MNIST's images).
    pub dims: Vec<usize>,
    /// The bytes, row-major: as many as the sizes multiply to.
    pub data: Vec<u8>,
}

/// What is wrong with a file that should be IDX. Each variant's doc says what its fields are.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)] // the fields: named in their variant's doc, one line each
pub enum IdxError {
    /// Fewer bytes (`found`) than the header needs (`needed`).
    HeaderTooShort { needed: usize, found: usize },
    /// The first two bytes are not zero: the first four, big-endian, are `magic`.
    BadMagic { magic: u32 },
    /// A type `code` other than unsigned byte (0x08).
    UnsupportedType { code: u8 },
    /// Zero dimensions.
    NoDimensions,
    /// The sizes `dims` multiply to more than [`MAX_DECODED_BYTES`] (or overflow).
    TooLarge { dims: Vec<usize> },
    /// Less data (`found` bytes) than the header claims (`expected`).
    Truncated { expected: usize, found: usize },
    /// More data (`found` bytes) than the header claims (`expected`).
    TrailingBytes { expected: usize, found: usize },
    /// The gzip stream is corrupt, for `reason`.
    Gzip { reason: String },
}

impl fmt::Display for IdxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdxError::HeaderTooShort { found: 0, .. } => f.write_str("the file is empty"),
            IdxError::HeaderTooShort { needed, found } => {
                write!(f, "header needs {needed} bytes, the file has {found}")
            }
            IdxError::BadMagic { magic } => {
                write!(
                    f,
                    "magic number 0x{magic:08x} does not start with two zero bytes"
                )
            }
            IdxError::UnsupportedType { code } => {
                write!(f, "element type 0x{code:02x} is not unsigned byte (0x08)")
            }
            IdxError::NoDimensions => f.write_str("the header declares zero dimensions"),
            IdxError::TooLarge { dims } => write!(
                f,
                "dims {dims:?} claim more than {MAX_DECODED_BYTES} bytes of data"
            ),
            IdxError::Truncated { expected, found } => write!(
                f,
                "truncated: the header claims {expected} bytes of data, the file holds {found}"
            ),
            IdxError::TrailingBytes { expected, found } => {
                let extra = found.saturating_sub(*expected);
                let bytes = if extra == 1 { "byte" } else { "bytes" };
                write!(
                    f,
                    "{extra} {bytes} past the end of the data: the header claims {expected} \
                     bytes of data, the file holds {found}"
                )
            }
            IdxError::Gzip { reason } => write!(f, "corrupt gzip data: {reason}"),
        }
    }
}

impl std::error::Error for IdxError {}

/// Decodes an IDX file's bytes, gunzipping them first if they are gzip-compressed (a single
/// gzip member, as MNIST's files are).
pub fn decode(bytes: &[u8]) -> Result<IdxArray, IdxError> {
    if !bytes.starts_with(&GZIP_MAGIC) {
        return parse(bytes);
    }
    let decoded = gunzip(bytes)?;
    let array = parse(&decoded)?;
    verify_gzip_trailer(bytes, &decoded)?;
    Ok(array)
}

/// Parses uncompressed IDX bytes.
pub fn parse(bytes: &[u8]) -> Result<IdxArray, IdxError> {
    let (dims, header_len) = parse_header(bytes)?;
    let expected = payload_len(&dims)?;
    let found = bytes.len() - header_len;
    if found < expected {
        return Err(IdxError::Truncated { expected, found });
    }
    if found > expected {
        return Err(IdxError::TrailingBytes { expected, found });
    }
    Ok(IdxArray {
        dims,
        data: bytes[header_len..].to_vec(),
    })
}

/// The header of IDX bytes: the sizes, and the header's length. `bytes` may hold just the
/// header.
fn parse_header(bytes: &[u8]) -> Result<(Vec<usize>, usize), IdxError> {
    let short = |needed| IdxError::HeaderTooShort {
        needed,
        found: bytes.len(),
    };
    let magic_bytes: [u8; 4] = bytes.get(..4).ok_or(short(4))?.try_into().unwrap();
    let magic = u32::from_be_bytes(magic_bytes);
    if magic_bytes[..2] != [0, 0] {
        return Err(IdxError::BadMagic { magic });
    }
    if magic_bytes[2] != TYPE_UNSIGNED_BYTE {
        return Err(IdxError::UnsupportedType {
            code: magic_bytes[2],
        });
    }
    let ndims = usize::from(magic_bytes[3]);
    if ndims == 0 {
        return Err(IdxError::NoDimensions);
    }
    let header_len = 4 + 4 * ndims;
    let size_bytes = bytes.get(4..header_len).ok_or(short(header_len))?;
    let dims = size_bytes
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes(b.try_into().unwrap()) as usize)
        .collect();
    Ok((dims, header_len))
}

/// The number of data bytes `dims` call for, if within [`MAX_DECODED_BYTES`].
fn payload_len(dims: &[usize]) -> Result<usize, IdxError> {
    dims.iter()
        .try_fold(1usize, |len, &d| len.checked_mul(d))
        .filter(|&len| len <= MAX_DECODED_BYTES)
        .ok_or_else(|| IdxError::TooLarge {
            dims: dims.to_vec(),
        })
}

/// Inflates a gzip stream, reading the IDX header first so that no more than the header
/// claims (plus one byte, to detect trailing data) is ever inflated.
fn gunzip(bytes: &[u8]) -> Result<Vec<u8>, IdxError> {
    let gzip_error = |err: std::io::Error| IdxError::Gzip {
        reason: match err.kind() {
            std::io::ErrorKind::UnexpectedEof => format!("the stream is truncated ({err})"),
            _ => err.to_string(),
        },
    };
    let mut decoder = GzDecoder::new(bytes);
    let mut header = Vec::with_capacity(16);
    (&mut decoder)
        .take(4)
        .read_to_end(&mut header)
        .map_err(gzip_error)?;
    if header.len() == 4 && header[3] > 0 {
        let sizes_len = 4 * u64::from(header[3]);
        (&mut decoder)
            .take(sizes_len)
            .read_to_end(&mut header)
            .map_err(gzip_error)?;
    }
    let (dims, _) = parse_header(&header)?;
    let claimed = payload_len(&dims)?;
    let mut decoded = header;
    decoder
        .take(claimed as u64 + 1)
        .read_to_end(&mut decoded)
        .map_err(gzip_error)?;
    Ok(decoded)
}

/// Checks the CRC-32 and length that end a gzip member against the inflated data. The decoder
/// stops silently where a cut-off stream ends, so this is what catches a truncated `.gz`.
fn verify_gzip_trailer(bytes: &[u8], decoded: &[u8]) -> Result<(), IdxError> {
    let truncated = || IdxError::Gzip {
        reason: "the stream is truncated (its CRC-32 and length do not match the data)".into(),
    };
    let trailer = bytes
        .len()
        .checked_sub(8)
        .map(|at| &bytes[at..])
        .ok_or_else(truncated)?;
    let stored_crc = u32::from_le_bytes(trailer[..4].try_into().unwrap());
    let stored_len = u32::from_le_bytes(trailer[4..].try_into().unwrap());
    let mut crc = flate2::Crc::new();
    crc.update(decoded);
    if crc.sum() == stored_crc && stored_len == decoded.len() as u32 {
        Ok(())
    } else {
        Err(truncated())
    }
}

/// Encodes an unsigned-byte array as IDX (magic `0x000008NN`, NN = number of dims).
///
/// # Panics
/// If `data.len()` is not the product of `dims`, or a size does not fit in 32 bits.
pub fn encode(dims: &[usize], data: &[u8]) -> Vec<u8> {
    assert_eq!(
        dims.iter().product::<usize>(),
        data.len(),
        "idx::encode: dims {dims:?} do not match {} bytes",
        data.len()
    );
    let mut out = header(dims);
    out.extend_from_slice(data);
    out
}

/// The header of an unsigned-byte IDX array of `dims`: the magic number, then each size as a
/// big-endian `u32`. What [`encode`] writes before the data, for a writer that streams the
/// data after it instead of holding it all.
///
/// # Panics
/// If there are more than 255 dimensions, or a size does not fit in 32 bits.
pub fn header(dims: &[usize]) -> Vec<u8> {
    let ndims = u8::try_from(dims.len()).expect("idx::header: at most 255 dimensions");
    let mut out = vec![0, 0, TYPE_UNSIGNED_BYTE, ndims];
    for &d in dims {
        let d = u32::try_from(d).expect("idx::header: sizes must fit in 32 bits");
        out.extend_from_slice(&d.to_be_bytes());
    }
    out
}
