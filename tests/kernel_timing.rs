//! Timing each kernel a device runs (`CudaDevice::set_kernel_timing`), on the emulator: every
//! kernel run while timing is on, in launch order, none before or after. (Its own test binary:
//! the emulator is one device for the whole process, and other tests' kernels would mix in.)

use ferrograd::{Device, Tensor};

#[test]
fn timing_lists_each_kernel_run_while_it_is_on() {
    let device = Device::cuda_emulator();
    let Device::Cuda(cuda) = &device else {
        unreachable!("the emulator is a CUDA device")
    };
    let x = Tensor::uniform(&[64, 32], -1.0, 1.0, &device);
    let w = Tensor::uniform(&[16, 32], -1.0, 1.0, &device);
    let _ = x.tanh(); // before timing: not listed
    cuda.set_kernel_timing(true);
    let y = x.tanh();
    let _ = y.matmul(&w.reshape(&[32, 16]));
    let times = cuda.take_kernel_times();
    let names: Vec<&str> = times.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["unary_tanh", "gemm"]);
    assert!(times
        .iter()
        .all(|t| t.micros >= 0.0 && t.micros.is_finite()));
    assert_eq!(times[1].config.grid.x, 1, "16 columns: one 64-wide tile");
    assert!(
        cuda.take_kernel_times().is_empty(),
        "taken: the list starts over"
    );
    let _ = x.relu();
    cuda.set_kernel_timing(false);
    let _ = x.sigmoid(); // after timing: not listed
    cuda.set_kernel_timing(true);
    assert!(
        cuda.take_kernel_times().is_empty(),
        "stopping timing drops what it had not handed over"
    );
    cuda.set_kernel_timing(false);
}
