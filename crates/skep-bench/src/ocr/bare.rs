//! The baseline: leptess engines driven by a plain loop, one engine per
//! thread, created once and reused; no queue, no messages, no slots.

use std::path::Path;
use std::sync::Barrier;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use leptess::{LepTess, Variable};
use tracing::warn;

use super::corpus::Page;
use super::{Error, Result, Round, Settings};
use crate::load::Meter;

/// Reads every page once on `settings.threads` threads, each taking the
/// next unread page. Each thread first starts its engine and reads one
/// page untimed (the warm-up rule); the clock runs from when all threads
/// are warm until the last page is read.
pub fn run(pages: &[Page], settings: &Settings) -> Result<Round> {
    let threads = settings.threads.max(1);
    let next = AtomicUsize::new(0);
    let warm = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (next, warm) = (&next, &warm);
                s.spawn(move || {
                    // NB: every thread reaches the barrier, even one whose
                    // engine failed, or the others would wait for ever.
                    let engine = warm_engine(&pages[t % pages.len()], settings);
                    warm.wait();
                    let mut engine = engine?;
                    let mut read = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(page) = pages.get(i) else { break };
                        read.push((i, recognize(&mut engine, &page.path, settings)));
                    }
                    Ok::<_, Error>(read)
                })
            })
            .collect();
        warm.wait();
        let (started, meter) = (Instant::now(), Meter::start());
        let joined: Vec<_> = handles.into_iter().map(|h| h.join()).collect();
        let (elapsed, others) = (started.elapsed(), meter.others());
        let mut texts = vec![None; pages.len()];
        for outcome in joined {
            let read = outcome.map_err(|_| Error::Panicked("a bare OCR thread"))??;
            for (i, text) in read {
                texts[i] = text;
            }
        }
        Ok(Round { elapsed, texts, others })
    })
}

fn warm_engine(page: &Page, settings: &Settings) -> Result<LepTess> {
    let mut engine = LepTess::new(None, &settings.languages).map_err(|e| Error::Engine(e.to_string()))?;
    let _ = recognize(&mut engine, &page.path, settings);
    Ok(engine)
}

/// The text of one page, or `None` (with a warning) when it cannot be read.
fn recognize(engine: &mut LepTess, path: &Path, settings: &Settings) -> Option<String> {
    let text = (|| {
        let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
        engine
            .set_variable(Variable::TesseditPagesegMode, &settings.psm.to_string())
            .map_err(|_| format!("page segmentation mode {} refused", settings.psm))?;
        engine.set_image_from_mem(&bytes).map_err(|e| e.to_string())?;
        engine.set_fallback_source_resolution(settings.dpi as i32);
        engine.get_utf8_text().map_err(|e| e.to_string())
    })();
    text.map_err(|error| warn!(path = %path.display(), %error, "bare engine could not read a page"))
        .ok()
}
