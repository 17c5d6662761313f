//! The whole Pixelpipe story on one machine: [`story`] drives a flash sale
//! through a PixelPipeline on a real node (tests/env/node.sh; [`node`] reads
//! its worker pods), its load set against what one worker takes in on this
//! host ([`calibrate`]), and checks every event's fate ([`expect`]); [`summary`]
//! tells what happened; [`rig`] is what a pipeline here stands on (topics,
//! manifests, kubectl). [`runner`] is the stand-in kubelet the fast tests
//! keep: Deployments as local processes.

pub mod calibrate;
pub mod expect;
pub mod node;
pub mod rig;
pub mod runner;
pub mod story;
pub mod summary;
