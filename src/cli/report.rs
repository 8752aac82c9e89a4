//! `faultline report DIR`: rebuild the HTML, Markdown and JUnit reports from a results folder.

use crate::report::build;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// A results folder from `faultline run`, `load`, `ramp`, `sla` or `bench`.
    pub dir: PathBuf,
    /// Where to write the HTML report (default DIR/report.html); summary.md and junit.xml go
    /// beside it.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let built = build::build(&args.dir, args.out.as_deref())?;
    println!("  {}", built.html.display());
    if let Some(md) = &built.markdown {
        println!("  {}", md.display());
    }
    println!("  {}", built.junit.display());
    Ok(ExitCode::SUCCESS)
}
