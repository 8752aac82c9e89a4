//! stub
#[derive(clap::Args, Debug)]
pub struct CostArgs {}
pub fn run(_: CostArgs) -> anyhow::Result<std::process::ExitCode> {
    todo!()
}
