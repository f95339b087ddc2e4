//! Build script. The CUDA backend will embed `kernels/*.cu` here and generate the kernel table;
//! until then it only tells cargo when to rerun.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=kernels");
}
