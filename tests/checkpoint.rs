//! Checkpoints: an exact resume, PyTorch-style names, clear errors for bad files, and atomic
//! writes that leave the previous file intact when a write fails.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use common::process_wide_generator;
use ferrograd::atomic_file::write_atomically;
use ferrograd::checkpoint::{self, Checkpoint};
use ferrograd::gan::{load_generator, Gan, TrainingProgress, IMAGE_DIM};
use ferrograd::nn::Module;
use ferrograd::rng::with_default_generator;
use ferrograd::{manual_seed, Device, Error, Tensor};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "ferrograd-checkpoint-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn steps(gan: &mut Gan, n: usize) -> Vec<u32> {
    (0..n)
        .flat_map(|_| {
            let real = Tensor::uniform(&[16, IMAGE_DIM], -1.0, 1.0, &Device::Cpu);
            let stats = gan.train_step(&real);
            [stats.d_loss, stats.g_loss].map(f32::to_bits)
        })
        .collect()
}

/// Train, save, train on; a fresh GAN loaded from the save trains on identically, bit for bit,
/// its learning rate restored too. (One test, since it drives the process-wide generator.)
#[test]
fn a_resumed_gan_continues_exactly_and_names_match_pytorch() {
    let _turn = process_wide_generator();
    let dir = scratch("resume");
    let path = dir.join("gan.safetensors");
    let dev = Device::Cpu;
    manual_seed(3);
    let mut original = Gan::new(&dev, 1e-4);
    steps(&mut original, 3);
    let progress = TrainingProgress {
        epoch: 0,
        step: 3,
        seed: 3,
        batch_size: 16,
        rng: with_default_generator(|g| *g),
    };
    original.save_checkpoint(&path, &progress).unwrap();
    let expected = steps(&mut original, 2);

    manual_seed(99); // different initial weights, all to be overwritten
    let mut resumed = Gan::new(&dev, 2e-4); // the checkpoint's 1e-4 replaces it
    let loaded = resumed.load_checkpoint(&path).unwrap();
    assert_eq!(loaded, progress);
    assert_eq!(resumed.lr(), 1e-4);
    with_default_generator(|g| *g = loaded.rng);
    assert_eq!(steps(&mut resumed, 2), expected);

    // The generator alone, by the names PyTorch's nn.Sequential uses after the prefix.
    let saved = Checkpoint::load(&path).unwrap();
    assert_eq!(saved.metadata("step").unwrap(), "3");
    for (name, shape) in [("0.weight", [256, 100]), ("6.weight", [784, 1024])] {
        let tensor = saved.tensor(&format!("generator.{name}"), &dev).unwrap();
        assert_eq!(tensor.shape(), shape);
    }
    let generator = load_generator(&path, &dev).unwrap();
    let first = &generator.named_parameters()[0].1;
    assert_eq!(
        first.to_vec(),
        saved.tensor("generator.0.weight", &dev).unwrap().to_vec()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unusable_checkpoints_are_clear_errors() {
    let _turn = process_wide_generator();
    let dir = scratch("errors");
    let dev = Device::Cpu;
    let mut gan = Gan::new(&dev, 2e-4);

    let missing = dir.join("missing.safetensors");
    let err = gan.load_checkpoint(&missing).unwrap_err();
    assert!(matches!(err, Error::Io { .. }));
    // The operating system's reason, once, also where the error's chain of sources is printed
    // one after another (anyhow's `{:#}`).
    let mut chain = err.to_string();
    let mut cause = std::error::Error::source(&err);
    while let Some(source) = cause {
        chain += &format!(": {source}");
        cause = source.source();
    }
    let reason = std::fs::read(&missing).unwrap_err().to_string();
    assert_eq!(
        chain,
        format!("{}: {reason}", missing.display()),
        "the reason once"
    );

    let garbage = dir.join("garbage.safetensors");
    std::fs::write(&garbage, b"this is not a checkpoint").unwrap();
    let err = gan.load_checkpoint(&garbage).unwrap_err();
    assert!(
        matches!(err, Error::Checkpoint { .. })
            && err.to_string().contains("not a safetensors file"),
        "{err}"
    );

    let good = dir.join("good.safetensors");
    let progress = TrainingProgress {
        epoch: 0,
        step: 0,
        seed: 0,
        batch_size: 64,
        rng: with_default_generator(|g| *g),
    };
    gan.save_checkpoint(&good, &progress).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let truncated = dir.join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    assert!(matches!(
        gan.load_checkpoint(&truncated),
        Err(Error::Checkpoint { .. })
    ));

    // The right format tag but a tensor of the wrong shape, and then one missing.
    let wrong = dir.join("wrong.safetensors");
    let meta = || [("format".to_string(), "ferrograd.mnist_gan.v1".to_string())].into();
    let tensors = vec![(
        "generator.0.weight".to_string(),
        Tensor::zeros(&[3, 3], &dev),
    )];
    checkpoint::save(&wrong, &tensors, meta()).unwrap();
    let err = gan.load_checkpoint(&wrong).unwrap_err();
    assert!(
        err.to_string()
            .contains("generator.0.weight has shape [3, 3], the model expects [256, 100]"),
        "{err}"
    );
    checkpoint::save(&wrong, &[], meta()).unwrap();
    let err = gan.load_checkpoint(&wrong).unwrap_err();
    assert!(
        err.to_string()
            .contains("tensor \"generator.0.weight\" is missing"),
        "{err}"
    );
    checkpoint::save(&wrong, &[], [].into()).unwrap();
    let err = gan.load_checkpoint(&wrong).unwrap_err();
    assert!(
        err.to_string()
            .contains("metadata entry \"format\" is missing"),
        "{err}"
    );
    // Another format's tag (a later version's, say): refused before any tensor is read.
    let other_format = [("format".to_string(), "ferrograd.mnist_gan.v2".to_string())].into();
    checkpoint::save(&wrong, &tensors, other_format).unwrap();
    let err = gan.load_checkpoint(&wrong).unwrap_err();
    assert!(
        err.to_string()
            .contains("format \"ferrograd.mnist_gan.v2\", expected \"ferrograd.mnist_gan.v1\""),
        "{err}"
    );

    // A shape whose element count overflows, with a zero dimension: safetensors' own count
    // (its product, 0) passes it, so the loader checks it.
    let header = r#"{"a":{"dtype":"F32","shape":[0,4294967296,4294967296],"data_offsets":[0,0]}}"#;
    let mut crafted = (header.len() as u64).to_le_bytes().to_vec();
    crafted.extend(header.as_bytes());
    std::fs::write(&wrong, crafted).unwrap();
    let err = Checkpoint::load(&wrong).unwrap_err();
    assert!(
        err.to_string()
            .contains("tensor a has shape [0, 4294967296, 4294967296], more elements than"),
        "{err}"
    );
    // A tensor in half precision (a state dict saved after PyTorch's `.half()`): named, not
    // read as F32's bytes.
    let header = r#"{"a":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}"#;
    let mut crafted = (header.len() as u64).to_le_bytes().to_vec();
    crafted.extend(header.as_bytes());
    crafted.extend([0, 0x3c, 0, 0x40]); // 1.0 and 2.0
    std::fs::write(&wrong, crafted).unwrap();
    let err = Checkpoint::load(&wrong).unwrap_err();
    assert!(
        err.to_string().contains("tensor a is F16, not F32"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A snapshot names its first tensor holding a NaN or an infinity: what keeps a diverged
/// run's checkpoint from replacing a good one.
#[test]
fn a_snapshot_names_its_first_non_finite_tensor() {
    let dev = Device::Cpu;
    let named = |values: [f32; 2]| {
        (
            "b".to_string(),
            Tensor::from_vec(values.to_vec(), &[2], &dev),
        )
    };
    let finite = ("a".to_string(), Tensor::zeros(&[3], &dev));
    let snapshot = |b| checkpoint::Snapshot::of(&[finite.clone(), named(b)], [].into());
    assert_eq!(snapshot([1.0, -2.0]).first_non_finite(), None);
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        assert_eq!(snapshot([1.0, bad]).first_non_finite(), Some("b"), "{bad}");
    }
}

/// A file that fails late — a tensor of the discriminator's missing after the generator's
/// were found, or a learning rate malformed or negative, a batch size of 0 or a step count past
/// what Adam holds after every tensor was — leaves the GAN it was loaded into as it was: its
/// weights, moments, step counts and learning rate.
#[test]
fn a_checkpoint_that_fails_late_changes_nothing() {
    let _turn = process_wide_generator();
    let dir = scratch("untouched");
    let dev = Device::Cpu;
    manual_seed(5);
    let rng = with_default_generator(|g| *g);
    let progress = |step| TrainingProgress {
        epoch: 0,
        step,
        seed: 5,
        batch_size: 16,
        rng,
    };
    let mut saved = Gan::new(&dev, 1e-4);
    steps(&mut saved, 2);
    let good = dir.join("good.safetensors");
    saved.save_checkpoint(&good, &progress(2)).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let header_len = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    // The same file with one header string changed for another (the header padded with spaces
    // to a multiple of 8 bytes, as safetensors writes it).
    let edited = |name: &str, from: &str, to: &str| {
        let header = std::str::from_utf8(&bytes[8..header_len]).unwrap();
        assert_eq!(header.matches(from).count(), 1, "{from} in {header}");
        let mut header = header.trim_end().replace(from, to);
        header.extend(std::iter::repeat_n(
            ' ',
            header.len().next_multiple_of(8) - header.len(),
        ));
        let mut file = (header.len() as u64).to_le_bytes().to_vec();
        file.extend_from_slice(header.as_bytes());
        file.extend_from_slice(&bytes[header_len..]);
        let path = dir.join(name);
        std::fs::write(&path, file).unwrap();
        path
    };

    let mut loaded_into = Gan::new(&dev, 3e-4);
    steps(&mut loaded_into, 1);
    let before = dir.join("before.safetensors");
    loaded_into.save_checkpoint(&before, &progress(1)).unwrap();
    for (bad, reason) in [
        (
            edited(
                "missing.safetensors",
                "\"discriminator.6.bias\"",
                "\"discriminator.6.bia_\"",
            ),
            "tensor \"discriminator.6.bias\" is missing",
        ),
        (
            edited(
                "malformed.safetensors",
                "\"lr\":\"0.0001\"",
                "\"lr\":\"0.000?\"",
            ),
            "metadata entry \"lr\" = \"0.000?\" is malformed",
        ),
        (
            edited(
                "negative.safetensors",
                "\"lr\":\"0.0001\"",
                "\"lr\":\"-1e-04\"",
            ),
            "metadata entry \"lr\" = -0.0001 is not a learning rate",
        ),
        (
            edited(
                "no_batch.safetensors",
                "\"batch_size\":\"16\"",
                "\"batch_size\":\"00\"",
            ),
            "metadata entry \"batch_size\" = 0 is not a batch size",
        ),
        (
            edited(
                "too_many_steps.safetensors",
                "\"discriminator_optimizer.step\":\"2\"",
                "\"discriminator_optimizer.step\":\"4294967296\"",
            ),
            "metadata entry \"discriminator_optimizer.step\" = 4294967296 is more steps than \
             Adam counts (4294967295)",
        ),
    ] {
        let err = loaded_into.load_checkpoint(&bad).unwrap_err();
        assert!(err.to_string().contains(reason), "{err}");
        let after = dir.join("after.safetensors");
        loaded_into.save_checkpoint(&after, &progress(1)).unwrap();
        assert!(
            std::fs::read(&after).unwrap() == std::fs::read(&before).unwrap(),
            "loading a bad file changed the GAN ({reason})"
        );
    }
    // The good file still loads, and then the GAN is the saved one.
    loaded_into.load_checkpoint(&good).unwrap();
    let reloaded = dir.join("reloaded.safetensors");
    loaded_into
        .save_checkpoint(&reloaded, &progress(2))
        .unwrap();
    assert!(std::fs::read(&reloaded).unwrap() == bytes);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// One tensor at a time: `tensor` reads a stored tensor as a new one, `restore` writes it into
/// a tensor of its shape, and a tensor of another shape is refused and left as it was.
#[test]
fn single_tensors_read_and_restore() {
    let dir = scratch("single-tensors");
    let dev = Device::Cpu;
    let path = dir.join("t.safetensors");
    let stored = Tensor::from_vec(vec![1.5, -2.0, 0.25, 8.0], &[2, 2], &dev);
    checkpoint::save(&path, &[("w".to_string(), stored)], HashMap::new()).unwrap();
    let file = Checkpoint::load(&path).unwrap();

    let read = file.tensor("w", &dev).unwrap();
    assert_eq!(
        (read.shape(), read.to_vec()),
        (&[2, 2][..], vec![1.5, -2.0, 0.25, 8.0])
    );
    let into = Tensor::zeros(&[2, 2], &dev);
    file.restore("w", &into).unwrap();
    assert_eq!(into.to_vec(), [1.5, -2.0, 0.25, 8.0]);

    let other_shape = Tensor::zeros(&[4], &dev);
    let err = file.restore("w", &other_shape).unwrap_err();
    assert!(
        err.to_string()
            .contains("tensor w has shape [2, 2], the model expects [4]"),
        "{err}"
    );
    assert_eq!(other_shape.to_vec(), [0.0; 4]);
    let err = file.tensor("b", &dev).unwrap_err();
    assert!(err.to_string().contains("tensor \"b\" is missing"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A file holding only a generator's tensors, without metadata — what PyTorch writes with
/// `save_file({f"generator.{k}": v for k, v in G.state_dict().items()})` — loads as a
/// generator, each tensor in its place.
#[test]
fn a_generator_alone_loads() {
    let _turn = process_wide_generator(); // both generators draw their initial weights
    let dir = scratch("generator-alone");
    let dev = Device::Cpu;
    let source = ferrograd::gan::generator(&dev);
    let tensors: Vec<(String, Tensor)> = source
        .named_parameters()
        .into_iter()
        .map(|(name, tensor)| (format!("generator.{name}"), tensor))
        .collect();
    let path = dir.join("g.safetensors");
    checkpoint::save(&path, &tensors, HashMap::new()).unwrap();
    let loaded = load_generator(&path, &dev).unwrap();
    for ((name, want), (_, got)) in source
        .named_parameters()
        .into_iter()
        .zip(loaded.named_parameters())
    {
        assert_eq!(got.to_vec(), want.to_vec(), "{name}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The same tensors and metadata make the same bytes, whatever order the metadata's map
/// iterates in (each `HashMap` has its own): two runs of one seed can be compared with a
/// checksum. The file reads back as written.
#[test]
fn equal_checkpoints_are_equal_files() {
    let dir = scratch("bytes");
    let dev = Device::Cpu;
    let tensors = vec![
        (
            "b.weight".to_string(),
            Tensor::from_vec(vec![1.0, -2.0, 3.5], &[3], &dev),
        ),
        (
            "a.bias".to_string(),
            Tensor::from_vec(vec![0.25, 0.5, 1.0, 2.0, 4.0, 8.0], &[2, 3], &dev),
        ),
    ];
    let entries: Vec<(String, String)> = (0..16)
        .map(|i| (format!("key{i:02}"), format!("value \"{i}\"")))
        .collect();
    let files: Vec<Vec<u8>> = (0..4)
        .map(|i| {
            let metadata: HashMap<String, String> = entries.iter().cloned().collect();
            let path = dir.join(format!("{i}.safetensors"));
            checkpoint::save(&path, &tensors, metadata).unwrap();
            std::fs::read(&path).unwrap()
        })
        .collect();
    assert!(files.iter().all(|file| file == &files[0]));

    // The header lists the metadata, then the tensors, each in sorted order, padded to a
    // multiple of 8 bytes.
    let header_len = u64::from_le_bytes(files[0][..8].try_into().unwrap()) as usize;
    assert_eq!(header_len % 8, 0);
    let header = std::str::from_utf8(&files[0][8..8 + header_len]).unwrap();
    let position = |key: &str| header.find(&format!("\"{key}\"")).unwrap();
    let keys = entries.iter().map(|(key, _)| key.as_str());
    let order: Vec<usize> = ["__metadata__"]
        .into_iter()
        .chain(keys)
        .chain(["a.bias", "b.weight"])
        .map(position)
        .collect();
    assert!(order.windows(2).all(|pair| pair[0] < pair[1]), "{header}");

    let loaded = Checkpoint::load(&dir.join("0.safetensors")).unwrap();
    assert_eq!(loaded.metadata("key07").unwrap(), "value \"7\"");
    for (name, tensor) in &tensors {
        let read = loaded.tensor(name, &dev).unwrap();
        assert_eq!(read.shape(), tensor.shape(), "{name}");
        assert_eq!(read.to_vec(), tensor.to_vec(), "{name}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_failed_atomic_write_leaves_the_old_file_and_no_temporary() {
    let dir = scratch("atomic");
    let path = dir.join("state.bin");
    write_atomically(&path, |f| std::io::Write::write_all(f, b"old")).unwrap();
    let result = write_atomically(&path, |f| {
        std::io::Write::write_all(f, b"half of the new")?;
        Err(std::io::Error::other("disk full"))
    });
    assert_eq!(result.unwrap_err().to_string(), "disk full");
    assert_eq!(std::fs::read(&path).unwrap(), b"old");
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["state.bin"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The temporary file of a write whose process was killed is removed by the next run in the
/// directory; one of a live process (a write in flight) and files of other names stay.
#[test]
#[cfg(any(unix, windows))]
fn temporaries_of_killed_writers_are_removed() {
    let dir = scratch("abandoned");
    let ended_pid = ended_process();
    let own_pid = std::process::id();
    let abandoned = format!(".checkpoint.safetensors.{ended_pid}.tmp");
    let kept = [
        format!(".checkpoint.safetensors.{own_pid}.tmp"),
        format!(".losses.svg.{ended_pid}.tmp.old"),
        format!(".{ended_pid}.tmp"),
        ".notes.tmp".to_string(),
        "checkpoint.safetensors".to_string(),
    ];
    for name in kept.iter().chain([&abandoned]) {
        std::fs::write(dir.join(name), b"x").unwrap();
    }
    let removed = ferrograd::atomic_file::remove_abandoned_temporaries(&dir).unwrap();
    assert_eq!(removed, 1);
    let mut left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    let mut expected = kept.to_vec();
    expected.sort();
    assert_eq!(left, expected);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The id of a process that has ended: this test binary, listing its tests.
fn ended_process() -> u32 {
    let mut ended = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("--list")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    ended.wait().unwrap();
    ended.id()
}

/// A write removes the temporary files that killed writers of the same file left beside it
/// (a `gan_sample --samples-out` killed while generating leaves one as large as it got), and
/// no other file's. (A running writer's is kept: `remove_abandoned_temporaries`'s test.)
#[cfg(any(unix, windows))]
#[test]
fn a_write_removes_the_temporaries_killed_writers_of_its_file_left() {
    let dir = scratch("abandoned-of-one");
    let ended_pid = ended_process();
    let abandoned = format!(".samples.idx.{ended_pid}.tmp");
    let kept = [
        format!(".other.idx.{ended_pid}.tmp"),
        format!(".samples.idx.{ended_pid}.tmp.old"),
    ];
    for name in kept.iter().chain([&abandoned]) {
        std::fs::write(dir.join(name), b"x").unwrap();
    }
    write_atomically(&dir.join("samples.idx"), |file| {
        std::io::Write::write_all(file, b"data")
    })
    .unwrap();
    let mut left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    let mut expected = [&kept[..], &["samples.idx".to_string()]].concat();
    expected.sort();
    assert_eq!(left, expected);
    std::fs::remove_dir_all(&dir).unwrap();
}
