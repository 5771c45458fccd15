//! Size and speed of searchable-PDF writing. Ignored by default; run with
//! `cargo test --release -p skep-doc --test pdf_measure -- --ignored --nocapture`.
//! `SKEP_MEASURE_PGM=page.pgm` adds a real page (a binary PGM, e.g. from
//! `pdftoppm -gray -r 300`).

use std::time::{Duration, Instant};

use skep_doc::layout::{BBox, Block, Line, PageLayout, Paragraph, Word};
use skep_doc::pdf::{ImagePage, LayerPage, PageImage, PdfInfo, image_pdf, text_layer_pdf};

const INFO: PdfInfo<'static> = PdfInfo {
    title: None,
    producer: "skep",
};

/// The fastest of `runs` calls (at least one), and the last output.
fn best_of<T>(runs: u32, mut f: impl FnMut() -> T) -> (Duration, T) {
    let start = Instant::now();
    let mut out = f();
    let mut best = start.elapsed();
    for _ in 1..runs {
        let start = Instant::now();
        out = f();
        best = best.min(start.elapsed());
    }
    (best, out)
}

/// An A4 page at 300 dpi with 30 lines of 10 words.
fn page_of_300_words() -> PageLayout {
    let words = [
        "invoice", "number", "amount", "due", "payment", "terms", "net", "thirty", "days", "total",
    ];
    let lines = (0..30u32)
        .map(|row| {
            let top = 300 + 100 * row;
            let mut left = 250;
            let words = words
                .iter()
                .map(|text| {
                    let right = left + 30 * text.len() as u32;
                    let word = Word {
                        bbox: BBox {
                            left,
                            top,
                            right,
                            bottom: top + 50,
                        },
                        text: (*text).into(),
                        confidence: 93.0,
                    };
                    left = right + 25;
                    word
                })
                .collect();
            Line {
                bbox: BBox::default(),
                words,
            }
        })
        .collect();
    PageLayout {
        number: 1,
        width: 2480,
        height: 3508,
        dpi: 300,
        blocks: vec![Block {
            bbox: BBox::default(),
            paragraphs: vec![Paragraph {
                bbox: BBox::default(),
                lines,
            }],
        }],
    }
}

/// Paper white with scanner noise of +-`noise`, and dark text-like strokes.
fn synthetic_scan(width: usize, height: usize, noise: u32) -> Vec<u8> {
    let mut state = 0x2545_f491u32;
    let mut random = move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        state
    };
    let mut pixels = Vec::with_capacity(width * height);
    for y in 0..height {
        let in_line = (300..3300).contains(&y) && (y - 300) % 100 < 50;
        for x in 0..width {
            let jitter = if noise == 0 {
                0
            } else {
                (random() % (2 * noise + 1)) as i32 - noise as i32
            };
            let ink = in_line && (250..2230).contains(&x) && (x / 7 + y / 11) % 5 == 0;
            let base = if ink { 30 } else { 245 };
            pixels.push((base + jitter).clamp(0, 255) as u8);
        }
    }
    pixels
}

#[test]
#[ignore = "measurement"]
fn measure() {
    let layout = page_of_300_words();
    assert_eq!(layout.words().count(), 300);
    let (time, pdf) = best_of(20, || {
        text_layer_pdf(
            &[LayerPage {
                width_pt: 595.0,
                height_pt: 842.0,
                layout: Some(&layout),
            }],
            &INFO,
        )
        .unwrap()
    });
    println!("text layer, 300 words: {} bytes, {:?}", pdf.len(), time);

    let (width, height) = (2480usize, 3508usize);
    let mut images = vec![
        ("blank white", vec![255u8; width * height]),
        ("synthetic text, clean", synthetic_scan(width, height, 0)),
        ("synthetic text, noise +-3", synthetic_scan(width, height, 3)),
    ];
    if let Ok(path) = std::env::var("SKEP_MEASURE_PGM") {
        let pgm = std::fs::read(path).unwrap();
        let header = format!("P5\n{width} {height}\n255\n");
        assert!(pgm.starts_with(header.as_bytes()), "need a {width}x{height} binary PGM");
        images.push(("real page (SKEP_MEASURE_PGM)", pgm[header.len()..].to_vec()));
    }
    for (name, pixels) in &images {
        let (time, pdf) = best_of(3, || {
            image_pdf(
                &[ImagePage {
                    image: PageImage::Gray8 {
                        data: pixels,
                        width: width as u32,
                        height: height as u32,
                    },
                    layout: &layout,
                }],
                &INFO,
            )
            .unwrap()
        });
        println!(
            "gray {width}x{height} page, {name}, 300 words: {} bytes, {:?}",
            pdf.len(),
            time
        );
    }
}
