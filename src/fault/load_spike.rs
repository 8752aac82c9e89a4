//! `load-spike`: multiplies the load engine's arrival rate for the fault's window (2.0 = twice
//! the traffic). Lives in the runner's process, so nothing is left behind if it dies.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    pub multiplier: f64,
}

// ---------------------------------------------------------------------------------------------
// Implementation.

use crate::fault::{FaultContext, Verification};

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
}

pub async fn preflight(p: &Params, _ctx: &FaultContext) -> Result<(), Error> {
    if p.multiplier.is_finite() && p.multiplier > 0.0 {
        Ok(())
    } else {
        Err(Error::BadMultiplier(p.multiplier))
    }
}

pub async fn prepare(p: &Params, ctx: &FaultContext) -> Result<Undo, Error> {
    preflight(p, ctx).await?;
    Ok(Undo {
        previous: ctx.control.multiplier(),
    })
}

pub async fn inject(p: &Params, ctx: &FaultContext, _undo: &Undo) -> Result<(), Error> {
    ctx.control.set_multiplier(p.multiplier);
    Ok(())
}

pub async fn verify(p: &Params, ctx: &FaultContext, _undo: &Undo) -> Result<Verification, Error> {
    let actual = ctx.control.multiplier();
    if actual == p.multiplier {
        Ok(Verification::Verified)
    } else {
        Err(Error::NotInEffect {
            actual,
            want: p.multiplier,
        })
    }
}

pub async fn restore(_p: &Params, ctx: &FaultContext, undo: &Undo) -> Result<(), Error> {
    ctx.control.set_multiplier(undo.previous);
    Ok(())
}
