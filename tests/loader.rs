//! The mini-batch loader: PyTorch's batch count and short last batch, a fresh shuffle per
//! epoch that depends only on (seed, epoch), and torchvision's scaling to [-1, 1].

use ferrograd::data::DataLoader;
use ferrograd::Device;

#[test]
fn sixty_thousand_images_make_937_full_batches_and_one_of_32() {
    let images = vec![0u8; 60_000 * 4];
    let loader = DataLoader::new(&images, 4, 64, 0);
    assert_eq!((loader.len(), loader.batches_per_epoch()), (60_000, 938));
    let sizes: Vec<usize> = loader
        .epoch(0, &Device::Cpu)
        .map(|b| b.shape()[0])
        .collect();
    assert_eq!(sizes.len(), 938);
    assert!(sizes[..937].iter().all(|&s| s == 64));
    assert_eq!(sizes[937], 32);
}

#[test]
fn each_epoch_is_a_new_permutation_fixed_by_seed_and_epoch() {
    let images: Vec<u8> = (0..1000u32).map(|i| (i % 256) as u8).collect();
    let loader = DataLoader::new(&images, 1, 10, 7);
    let order = loader.order(0);
    let mut sorted = order.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..1000).collect::<Vec<_>>(), "a permutation");
    assert_ne!(order, (0..1000).collect::<Vec<_>>(), "shuffled");
    assert_eq!(order, loader.order(0), "reproducible");
    assert_ne!(order, loader.order(1), "a new order each epoch");
    assert_ne!(
        order,
        DataLoader::new(&images, 1, 10, 8).order(0),
        "another seed"
    );
    // Roughly uniform: each image lands in the first half about half the time.
    let firsts = (0..200)
        .filter(|&e| loader.order(e)[..500].contains(&0))
        .count();
    assert!((70..=130).contains(&firsts), "{firsts}");
}

#[test]
fn pixels_scale_to_minus_one_one_in_the_shuffled_order() {
    let images = vec![0u8, 255, 51, 204, 128, 127];
    let loader = DataLoader::new(&images, 2, 2, 3);
    let order = loader.order(0);
    let batch = loader.batch(&order, 0, &Device::Cpu);
    assert_eq!(batch.shape(), [2, 2]);
    let scale = |p: u8| (f32::from(p) / 255.0 - 0.5) / 0.5;
    let expected: Vec<f32> = order[..2]
        .iter()
        .flat_map(|&i| [scale(images[2 * i]), scale(images[2 * i + 1])])
        .collect();
    assert_eq!(batch.to_vec(), expected);
    assert_eq!((scale(0), scale(255)), (-1.0, 1.0));
}
