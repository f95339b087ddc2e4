//! Named tensors and string metadata in a [safetensors](https://github.com/huggingface/safetensors)
//! file: the format PyTorch users load with `safetensors.torch.load_file`.
//!
//! Files are written atomically (see [`crate::atomic_file`]): a kill during a save leaves the
//! previous checkpoint intact.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use safetensors::tensor::{Dtype, TensorView};
use safetensors::{SafeTensorError, SafeTensors};

use crate::atomic_file::write_atomically;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::nn::Module;
use crate::tensor::{checked_numel, Tensor};

/// Writes `tensors` (as little-endian f32) and `metadata` to `path`, atomically.
pub fn save(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: HashMap<String, String>,
) -> Result<()> {
    Snapshot::of(tensors, metadata).write(path)
}

/// A checkpoint's contents copied to host memory: what [`save`] writes, taken now and written
/// later — by another thread if need be (it owns its data), so that training can go on while
/// the file is encoded and written.
#[derive(Debug)]
pub struct Snapshot {
    tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
    metadata: HashMap<String, String>,
}

impl Snapshot {
    /// Copies the values of `tensors` (from whichever device they are on; from a GPU, all in
    /// one read, one wait for the device rather than one per tensor).
    pub fn of(tensors: &[(String, Tensor)], metadata: HashMap<String, String>) -> Snapshot {
        let refs: Vec<&Tensor> = tensors.iter().map(|(_, tensor)| tensor).collect();
        let tensors = tensors
            .iter()
            .zip(Tensor::to_vecs(&refs))
            .map(|((name, tensor), values)| (name.clone(), tensor.shape().to_vec(), values))
            .collect();
        Snapshot { tensors, metadata }
    }

    /// The name of the first tensor holding a NaN or an infinity, if any: the mark of a run
    /// that diverged, whose checkpoint should not replace a good one.
    pub fn first_non_finite(&self) -> Option<&str> {
        self.tensors
            .iter()
            .find(|(_, _, values)| values.iter().any(|v| !v.is_finite()))
            .map(|(name, _, _)| name.as_str())
    }

    /// Writes the snapshot to `path` as a safetensors file, atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        let bytes: Vec<Vec<u8>> = self
            .tensors
            .iter()
            .map(|(_, _, values)| values.iter().flat_map(|v| v.to_le_bytes()).collect())
            .collect();
        let views = self
            .tensors
            .iter()
            .zip(&bytes)
            .map(|((name, shape, _), data)| {
                let view = TensorView::new(Dtype::F32, shape.clone(), data)
                    .expect("f32 data of the tensor's own shape");
                (name.as_str(), view)
            });
        let checkpoint_error = |reason: String| Error::Checkpoint {
            path: path.to_path_buf(),
            reason,
        };
        // An empty metadata map is written as nothing at all: safetensors cannot read `{}` back.
        let metadata = (!self.metadata.is_empty()).then(|| self.metadata.clone());
        let encoded = safetensors::serialize(views, metadata)
            .and_then(|encoded| with_sorted_header(&encoded))
            .map_err(|err| checkpoint_error(err.to_string()))?;
        write_atomically(path, |file| file.write_all(&encoded)).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// `file` (a safetensors file) with its header's entries in sorted order. safetensors writes
/// the metadata in the order of a `HashMap`, which differs from one process to the next, so
/// the same checkpoint came out as different bytes; sorted, equal contents give equal files
/// (two runs of one seed can be compared with `cmp` or a checksum).
fn with_sorted_header(file: &[u8]) -> std::result::Result<Vec<u8>, SafeTensorError> {
    let (header_len, header) = SafeTensors::read_metadata(file)?;
    let data = &file[8 + header_len..];
    // The header's JSON rebuilt by hand, so that each map's keys are in sorted order whatever
    // map type serde_json was built with: the metadata by key, then the tensors' entries by
    // name (their offsets into `data` do not depend on the order).
    let mut json = String::from("{");
    let mut push_entry = |key: &str, value: &str| {
        if json.len() > 1 {
            json.push(',');
        }
        json.push_str(&serde_json::to_string(key).expect("a string encodes"));
        json.push(':');
        json.push_str(value);
    };
    let metadata: Option<BTreeMap<_, _>> = header.metadata().as_ref().map(|m| m.iter().collect());
    if let Some(metadata) = metadata {
        push_entry(
            "__metadata__",
            &serde_json::to_string(&metadata).expect("strings encode"),
        );
    }
    let tensors: BTreeMap<_, _> = header.tensors().into_iter().collect();
    for (name, info) in tensors {
        push_entry(
            &name,
            &serde_json::to_string(info).expect("a tensor's entry encodes"),
        );
    }
    json.push('}');
    // Padded with spaces to a multiple of 8 bytes, as safetensors pads it, so that the data
    // that follows stays aligned.
    let padded_len = json.len().next_multiple_of(8);
    let mut sorted = Vec::with_capacity(8 + padded_len + data.len());
    sorted.extend_from_slice(&(padded_len as u64).to_le_bytes());
    sorted.extend_from_slice(json.as_bytes());
    sorted.resize(8 + padded_len, b' ');
    sorted.extend_from_slice(data);
    Ok(sorted)
}

/// A checkpoint read back into memory.
#[derive(Debug)]
pub struct Checkpoint {
    path: PathBuf,
    tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
    metadata: HashMap<String, String>,
}

impl Checkpoint {
    /// Reads a safetensors file of f32 tensors.
    pub fn load(path: &Path) -> Result<Checkpoint> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let invalid = |reason: String| Error::Checkpoint {
            path: path.to_path_buf(),
            reason,
        };
        let (_, header) = SafeTensors::read_metadata(&bytes)
            .map_err(|err| invalid(format!("not a safetensors file ({err})")))?;
        let file = SafeTensors::deserialize(&bytes)
            .map_err(|err| invalid(format!("not a safetensors file ({err})")))?;
        let mut tensors = HashMap::new();
        for (name, view) in file.tensors() {
            if view.dtype() != Dtype::F32 {
                return Err(invalid(format!(
                    "tensor {name} is {:?}, not F32",
                    view.dtype()
                )));
            }
            // safetensors sizes a tensor by the product of its shape, which a zero dimension
            // keeps at 0 however large the others: such a shape would overflow our count.
            if checked_numel(view.shape()).is_none() {
                return Err(invalid(format!(
                    "tensor {name} has shape {:?}, more elements than a usize can count",
                    view.shape()
                )));
            }
            let values = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            tensors.insert(name, (view.shape().to_vec(), values));
        }
        Ok(Checkpoint {
            path: path.to_path_buf(),
            tensors,
            metadata: header.metadata().clone().unwrap_or_default(),
        })
    }

    /// The error that calls this file unusable, for `reason`.
    pub(crate) fn error(&self, reason: String) -> Error {
        Error::Checkpoint {
            path: self.path.clone(),
            reason,
        }
    }

    /// The metadata entry `key`.
    pub fn metadata(&self, key: &str) -> Result<&str> {
        self.metadata
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| self.error(format!("metadata entry {key:?} is missing")))
    }

    /// The metadata entry `key`, parsed.
    pub fn parse<T: FromStr>(&self, key: &str) -> Result<T> {
        let text = self.metadata(key)?;
        text.parse()
            .map_err(|_| self.error(format!("metadata entry {key:?} = {text:?} is malformed")))
    }

    /// The stored tensor `name` as a new tensor.
    pub fn tensor(&self, name: &str, device: &Device) -> Result<Tensor> {
        let (shape, values) = self.get(name)?;
        Ok(Tensor::from_vec(values.clone(), shape, device))
    }

    /// Overwrites `into`'s values with the stored tensor `name`, which must have its shape.
    pub fn restore(&self, name: &str, into: &Tensor) -> Result<()> {
        into.assign(self.stored_like(name, into)?);
        Ok(())
    }

    /// Checks that every `(name, tensor)` pair has its stored tensor, of the tensor's shape,
    /// and returns the writes, still to be applied: a caller that also reads metadata can read
    /// it before it overwrites anything, so that a bad file changes nothing.
    pub fn check_restores(&self, restores: Vec<(String, Tensor)>) -> Result<Restores<'_>> {
        let writes = restores
            .into_iter()
            .map(|(name, into)| Ok((self.stored_like(&name, &into)?, into)))
            .collect::<Result<_>>()?;
        Ok(Restores { writes })
    }

    /// Restores every parameter of `module` from the tensors named `prefix` + its name; if one
    /// is missing or of another shape, none is restored.
    pub fn restore_module(&self, prefix: &str, module: &dyn Module) -> Result<()> {
        let restores = module
            .named_parameters()
            .into_iter()
            .map(|(name, param)| (format!("{prefix}{name}"), param))
            .collect();
        self.check_restores(restores)?.apply();
        Ok(())
    }

    /// The values of the stored tensor `name`, if it has `like`'s shape.
    fn stored_like(&self, name: &str, like: &Tensor) -> Result<&[f32]> {
        let (shape, values) = self.get(name)?;
        if shape.as_slice() != like.shape() {
            return Err(self.error(format!(
                "tensor {name} has shape {shape:?}, the model expects {:?}",
                like.shape()
            )));
        }
        Ok(values)
    }

    fn get(&self, name: &str) -> Result<&(Vec<usize>, Vec<f32>)> {
        self.tensors
            .get(name)
            .ok_or_else(|| self.error(format!("tensor {name:?} is missing")))
    }
}

/// Tensors checked against a checkpoint ([`Checkpoint::check_restores`]), each with the values
/// it will be given.
#[derive(Debug)]
pub struct Restores<'a> {
    writes: Vec<(&'a [f32], Tensor)>,
}

impl Restores<'_> {
    /// Overwrites each tensor with its stored values.
    pub fn apply(self) {
        for (values, into) in self.writes {
            into.assign(values);
        }
    }
}
