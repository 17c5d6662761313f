//! The whole Pixelpipe story on one machine, with no kubelet: [`runner`]
//! runs Deployments as local processes; [`rig`] is what a pipeline here
//! stands on (topics, manifests, kubectl); [`story`] drives a flash sale through
//! a PixelPipeline and checks every event's fate ([`expect`]);
//! [`summary`] tells what happened.

pub mod expect;
pub mod rig;
pub mod runner;
pub mod story;
pub mod summary;
