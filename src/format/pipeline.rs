//! A bounded, in-order parallel pipeline: one thread produces jobs (reads the input),
//! `threads` workers transform them (compress), and the calling thread consumes the
//! results strictly in job order (writes the output). At most `in_flight` jobs exist
//! at any time, so memory stays bounded however large the input is. Also the one
//! deflate step the compressing writers (qcow2, VMDK) share.

use super::FormatError;
use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::Mutex;

/// Run the pipeline. `produce` is called on a reader thread until it returns
/// `Ok(None)`; `work` runs on the workers; `consume` sees results in production order
/// on the calling thread. The first error from any side stops everything and is
/// returned.
pub fn run<J, R, P, W, C>(
    threads: usize,
    in_flight: usize,
    mut produce: P,
    work: W,
    mut consume: C,
) -> Result<(), FormatError>
where
    J: Send,
    R: Send,
    P: FnMut() -> Result<Option<J>, FormatError> + Send,
    W: Fn(J) -> Result<R, FormatError> + Sync,
    C: FnMut(R) -> Result<(), FormatError>,
{
    let threads = threads.max(1);
    let in_flight = in_flight.max(threads + 1);
    // Never blocks the producer: it holds a token per job, and there are no more
    // tokens than the job channel has room.
    let (job_tx, job_rx) = mpsc::sync_channel::<(u64, J)>(in_flight);
    let job_rx = Mutex::new(job_rx);
    std::thread::scope(|scope| {
        // A job may start only with a token; the consumer hands tokens back.
        let (token_tx, token_rx) = mpsc::sync_channel::<()>(in_flight);
        for _ in 0..in_flight {
            // cannot fail: the channel has room for every token and the receiver lives
            let _ = token_tx.send(());
        }
        let (res_tx, res_rx) = mpsc::channel::<(u64, Result<R, FormatError>)>();

        let producer_res = res_tx.clone();
        scope.spawn(move || {
            let mut seq = 0u64;
            while token_rx.recv().is_ok() {
                match produce() {
                    Ok(Some(job)) => {
                        if job_tx.send((seq, job)).is_err() {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        let _ = producer_res.send((seq, Err(e)));
                        break;
                    }
                }
                seq += 1;
            }
        });
        let work = &work;
        let job_rx = &job_rx;
        for _ in 0..threads {
            let res_tx = res_tx.clone();
            scope.spawn(move || loop {
                let next = match job_rx.lock() {
                    Ok(rx) => rx.recv(),
                    Err(_) => break,
                };
                let Ok((seq, job)) = next else { break };
                if res_tx.send((seq, work(job))).is_err() {
                    break;
                }
            });
        }
        drop(res_tx);

        let mut pending: BTreeMap<u64, Result<R, FormatError>> = BTreeMap::new();
        let mut next = 0u64;
        let mut outcome = Ok(());
        'outer: for (seq, r) in res_rx.iter() {
            pending.insert(seq, r);
            while let Some(r) = pending.remove(&next) {
                match r.and_then(&mut consume) {
                    Ok(()) => {
                        next += 1;
                        // fails only once the producer is done: nothing to wake then
                        let _ = token_tx.send(());
                    }
                    Err(e) => {
                        outcome = Err(e);
                        break 'outer;
                    }
                }
            }
        }
        // Dropping the token sender and the result receiver stops the producer and the
        // workers; the scope joins them.
        drop(token_tx);
        drop(res_rx);
        outcome
    })
}

/// Deflate all of `input` into `out` (cleared first) with `c`, which is reset first.
/// `Ok(false)` when the stream did not end (the output buffer would not hold it).
pub fn deflate_whole(
    c: &mut flate2::Compress,
    input: &[u8],
    out: &mut Vec<u8>,
    path: &std::path::Path,
) -> Result<bool, super::FormatError> {
    c.reset();
    out.clear();
    let st = c
        .compress_vec(input, out, flate2::FlushCompress::Finish)
        .map_err(|e| super::FormatError::Compress {
            path: path.to_path_buf(),
            problem: e.to_string(),
        })?;
    Ok(st == flate2::Status::StreamEnd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_with_many_workers() {
        let mut i = 0u64;
        let mut seen = Vec::new();
        run(
            4,
            8,
            || {
                i += 1;
                Ok(if i <= 1000 { Some(i) } else { None })
            },
            |j| {
                if j % 7 == 0 {
                    std::thread::yield_now();
                }
                Ok(j * 2)
            },
            |r| {
                seen.push(r);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(seen, (1..=1000).map(|j| j * 2).collect::<Vec<_>>());
    }

    #[test]
    fn errors_stop_the_pipeline() {
        let mut i = 0u64;
        let err = run(
            2,
            4,
            || {
                i += 1;
                Ok(Some(i))
            },
            |j| {
                if j == 50 {
                    Err(FormatError::Compress {
                        path: "x".into(),
                        problem: "boom".into(),
                    })
                } else {
                    Ok(j)
                }
            },
            |_| Ok(()),
        )
        .unwrap_err();
        assert!(err.to_string().contains("boom"));
    }
}
