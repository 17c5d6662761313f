//! Prints the PixelPipeline CRD as YAML: `cargo run -p pixelpipe-crds --bin crdgen > crds/pixelpipeline.yaml`.

fn main() {
    print!("{}", pixelpipe_crds::crd_yaml());
}
