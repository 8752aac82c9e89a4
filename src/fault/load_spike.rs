//! `load-spike`: multiplies the load engine's arrival rate for the fault's window (2.0 = twice
//! the traffic). Lives in the runner's process, so nothing is left behind if it dies.
//!
//! It acts only on load that the same process generates (`faultline run`): a running
//! `faultline load` has no control channel another process could reach, so a manual
//! `faultline inject` of a spike is refused rather than "verified" against nothing.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    pub multiplier: f64,
}

// ---------------------------------------------------------------------------------------------
// Implementation.

use crate::fault::{
    DescribeCx, FaultContext, Lifetime, Problem, Reach, SimBinding, Target, Verification,
};
use crate::limits::MAX_MULTIPLIER;
use crate::load::engine::Control;
use std::time::Duration;

/// Undo data: the multiplier before the spike.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Undo {
    pub previous: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("load-spike multiplier {0} is not a positive finite number")]
    BadMultiplier(f64),
    #[error("load-spike did not take effect: the multiplier is {actual}, not {want}")]
    NotInEffect { actual: f64, want: f64 },
    #[error(
        "load-spike has no load to act on: it multiplies the rate of the load this process generates, and `faultline inject` generates none (a running `faultline load` or `run` cannot be reached from another process); put the spike in an experiment's timeline and use `faultline run`"
    )]
    NoLoad,
}

fn control(ctx: &FaultContext) -> Result<&Control, Error> {
    ctx.control.as_deref().ok_or(Error::NoLoad)
}

pub async fn preflight(p: &Params, ctx: &FaultContext) -> Result<(), Error> {
    if !(p.multiplier.is_finite() && p.multiplier > 0.0) {
        return Err(Error::BadMultiplier(p.multiplier));
    }
    control(ctx)?;
    Ok(())
}

pub async fn prepare(p: &Params, ctx: &FaultContext) -> Result<Undo, Error> {
    preflight(p, ctx).await?;
    Ok(Undo {
        previous: control(ctx)?.multiplier(),
    })
}

pub async fn inject(p: &Params, ctx: &FaultContext, _undo: &Undo) -> Result<(), Error> {
    control(ctx)?.set_multiplier(p.multiplier);
    Ok(())
}

pub async fn verify(p: &Params, ctx: &FaultContext, _undo: &Undo) -> Result<Verification, Error> {
    let actual = control(ctx)?.multiplier();
    if actual == p.multiplier {
        Ok(Verification::Verified)
    } else {
        Err(Error::NotInEffect {
            actual,
            want: p.multiplier,
        })
    }
}

/// Without a load engine (`faultline recover` in another process) there is nothing to put
/// back: the spike died with the process that ran it.
pub async fn restore(_p: &Params, ctx: &FaultContext, undo: &Undo) -> Result<(), Error> {
    if let Some(c) = &ctx.control {
        c.set_multiplier(undo.previous);
    }
    Ok(())
}

impl crate::fault::FaultKind for Params {
    type Undo = Undo;
    type Error = Error;

    fn problems(&self) -> Vec<Problem> {
        let m = self.multiplier;
        if !(m.is_finite() && m > 0.0) {
            vec![Problem::new(
                &["multiplier"],
                format!("'{m}'"),
                "must be a positive number (2.0 = twice the traffic)",
            )]
        } else if m > MAX_MULTIPLIER {
            vec![Problem::new(
                &["multiplier"],
                format!("'{m}'"),
                format!("must be at most {MAX_MULTIPLIER}"),
            )]
        } else {
            Vec::new()
        }
    }

    fn reach(&self) -> Reach {
        Reach {
            targets: vec![Target::Load],
            hosts: Vec::new(),
            kube: Vec::new(),
            load: true,
        }
    }

    fn describe(&self, _cx: &DescribeCx) -> String {
        format!("multiply the arrival rate by {}", self.multiplier)
    }

    fn describe_end(&self, end: Option<&str>) -> String {
        format!(", rate back to normal at {}", end.unwrap_or("the end"))
    }

    fn lifetime(&self) -> Lifetime {
        Lifetime::Held
    }

    /// None needed: the spike lives in this process and dies with it.
    fn deadman_margin(&self) -> Option<Duration> {
        None
    }

    fn bind_to_sim(&mut self, _sim: &SimBinding) {}

    fn is_permanent(_: &Error) -> bool {
        false
    }

    fn example() -> Self {
        Params { multiplier: 2.0 }
    }

    async fn preflight(&self, ctx: &FaultContext) -> Result<(), Error> {
        preflight(self, ctx).await
    }
    async fn prepare(&self, ctx: &FaultContext) -> Result<Undo, Error> {
        prepare(self, ctx).await
    }
    async fn inject(&self, ctx: &FaultContext, undo: &Undo) -> Result<(), Error> {
        inject(self, ctx, undo).await
    }
    async fn verify(&self, ctx: &FaultContext, undo: &Undo) -> Result<Verification, Error> {
        verify(self, ctx, undo).await
    }
    async fn restore(&self, ctx: &FaultContext, undo: &Undo) -> Result<(), Error> {
        restore(self, ctx, undo).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::exec::Hosts;
    use std::sync::Arc;

    fn ctx(control: Option<Arc<Control>>) -> FaultContext {
        let mut c = FaultContext::new("r", "f", Arc::new(Hosts::default()), chrono::Utc::now());
        c.control = control;
        c
    }

    #[tokio::test]
    async fn without_a_load_engine_the_spike_is_refused_and_restore_is_a_no_op() {
        let p = Params { multiplier: 2.0 };
        let c = ctx(None);
        let e = preflight(&p, &c).await.unwrap_err();
        assert!(matches!(e, Error::NoLoad), "{e}");
        assert!(e.to_string().contains("no load to act on"));
        assert!(matches!(prepare(&p, &c).await, Err(Error::NoLoad)));
        assert!(matches!(
            inject(&p, &c, &Undo { previous: 1.0 }).await,
            Err(Error::NoLoad)
        ));
        restore(&p, &c, &Undo { previous: 1.0 }).await.unwrap();
    }

    #[tokio::test]
    async fn with_a_load_engine_the_spike_sets_and_restores_the_multiplier() {
        let p = Params { multiplier: 2.5 };
        let control = Arc::new(Control::default());
        let c = ctx(Some(control.clone()));
        preflight(&p, &c).await.unwrap();
        let undo = prepare(&p, &c).await.unwrap();
        inject(&p, &c, &undo).await.unwrap();
        assert_eq!(control.multiplier(), 2.5);
        assert_eq!(verify(&p, &c, &undo).await.unwrap(), Verification::Verified);
        restore(&p, &c, &undo).await.unwrap();
        assert_eq!(control.multiplier(), 1.0);
    }
}
