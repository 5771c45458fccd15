//! Searchable PDFs checked with the tools users and CI have: Poppler's
//! `pdftotext` (text and word boxes), `pdftoppm` (what the page looks
//! like), `qpdf` (structure, and laying a text layer under a scanned PDF)
//! and `img2pdf` (a scanned PDF made elsewhere).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use skep_doc::layout::{BBox, Block, Line, PageLayout, Paragraph, Word};
use skep_doc::pdf::{ImagePage, LayerPage, PageImage, PdfInfo, image_pdf, text_layer_pdf};

const INFO: PdfInfo<'static> = PdfInfo {
    title: Some("Ångström — test"),
    producer: "skep tests",
};

fn word(text: &str, left: u32, top: u32, right: u32, bottom: u32) -> Word {
    Word {
        bbox: BBox {
            left,
            top,
            right,
            bottom,
        },
        text: text.into(),
        confidence: 95.0,
    }
}

/// A one-block page of `lines` at `dpi`.
fn layout(width: u32, height: u32, dpi: u32, lines: Vec<Vec<Word>>) -> PageLayout {
    PageLayout {
        number: 1,
        width,
        height,
        dpi,
        blocks: vec![Block {
            bbox: BBox::default(),
            paragraphs: vec![Paragraph {
                bbox: BBox::default(),
                lines: lines
                    .into_iter()
                    .map(|words| Line {
                        bbox: BBox::default(),
                        words,
                    })
                    .collect(),
            }],
        }],
    }
}

/// Three lines of words on a US Letter page at 300 dpi; every box of a line
/// has the line's height.
fn letter_page() -> PageLayout {
    layout(
        2550,
        3300,
        300,
        vec![
            vec![
                word("Invoice", 300, 300, 700, 360),
                word("number", 740, 300, 1100, 360),
                word("3104-562", 1140, 300, 1600, 360),
            ],
            vec![word("Amount", 300, 420, 700, 480), word("due:", 740, 420, 960, 480)],
            vec![word("2,238,006.89", 300, 540, 1000, 600)],
        ],
    )
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write file");
    path
}

fn run(program: &str, args: &[&str]) -> Output {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} not runnable: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// `qpdf --check` passes with no warning (exit code 3 would be warnings).
fn assert_qpdf_clean(pdf: &Path) {
    let output = run("qpdf", &["--check", path(pdf)]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("No syntax or stream encoding errors"), "{stdout}");
    assert!(output.stderr.is_empty(), "{}", String::from_utf8_lossy(&output.stderr));
}

fn pdftotext(pdf: &Path, page: u32) -> String {
    let page = page.to_string();
    let output = run(
        "pdftotext",
        &["-f", &page, "-l", &page, "-enc", "UTF-8", path(pdf), "-"],
    );
    assert!(output.stderr.is_empty(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("utf-8 text")
}

/// The text lines of a page, without Poppler's trailing blank line and form feed.
fn text_lines(pdf: &Path, page: u32) -> Vec<String> {
    pdftotext(pdf, page)
        .trim_end_matches(['\n', '\u{c}'])
        .lines()
        .map(str::to_owned)
        .collect()
}

/// `(text, [x_min, y_min, x_max, y_max])` of every word `pdftotext -bbox` finds.
fn word_boxes(pdf: &Path) -> Vec<(String, [f32; 4])> {
    let output = run("pdftotext", &["-bbox", "-enc", "UTF-8", path(pdf), "-"]);
    let html = String::from_utf8(output.stdout).expect("utf-8 text");
    html.lines()
        .filter_map(|line| {
            let rest = line.trim().strip_prefix("<word ")?;
            let (attrs, text) = rest.split_once('>')?;
            let text = text.strip_suffix("</word>")?.replace("&amp;", "&").replace("&lt;", "<");
            let value = |name: &str| -> f32 {
                let start = attrs.find(&format!("{name}=\"")).expect("attribute") + name.len() + 2;
                attrs[start..]
                    .split('"')
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("number")
            };
            Some((text, [value("xMin"), value("yMin"), value("xMax"), value("yMax")]))
        })
        .collect()
}

/// Renders page 1 at `dpi` as 8-bit gray; returns (width, height, samples).
fn render_gray(pdf: &Path, dir: &Path, dpi: u32) -> (usize, usize, Vec<u8>) {
    let prefix = dir.join("render");
    let dpi = dpi.to_string();
    let output = run(
        "pdftoppm",
        &["-r", &dpi, "-gray", "-singlefile", path(pdf), path(&prefix)],
    );
    assert!(output.stderr.is_empty(), "{}", String::from_utf8_lossy(&output.stderr));
    let pgm = std::fs::read(dir.join("render.pgm")).expect("rendering");
    parse_pnm(&pgm, b"P5")
}

/// `samples` (width x height) blown up `factor` times, nearest neighbour.
fn enlarge(samples: &[u8], width: usize, height: usize, factor: usize) -> Vec<u8> {
    (0..height * factor)
        .flat_map(|y| (0..width * factor).map(move |x| samples[(y / factor) * width + x / factor]))
        .collect()
}

/// Parses a binary PGM/PPM as pdftoppm writes it (no comments).
fn parse_pnm(data: &[u8], magic: &[u8]) -> (usize, usize, Vec<u8>) {
    assert!(data.starts_with(magic));
    let mut fields = Vec::new();
    let mut at = 2;
    while fields.len() < 3 {
        while data[at].is_ascii_whitespace() {
            at += 1;
        }
        let start = at;
        while !data[at].is_ascii_whitespace() {
            at += 1;
        }
        fields.push(
            std::str::from_utf8(&data[start..at])
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
                .expect("pnm header"),
        );
    }
    (fields[0], fields[1], data[at + 1..].to_vec())
}

/// Page sizes in points, as `pdfinfo` reports them.
fn page_sizes(pdf: &Path, pages: u32) -> Vec<(f32, f32)> {
    let last = pages.to_string();
    let output = run("pdfinfo", &["-f", "1", "-l", &last, path(pdf)]);
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| line.starts_with("Page") && line.contains(" size:"))
        .map(|line| {
            let mut numbers = line.split(':').nth(1).expect("page size").split_whitespace();
            let width = numbers.next().and_then(|v| v.parse().ok()).expect("width");
            numbers.next(); // "x"
            (width, numbers.next().and_then(|v| v.parse().ok()).expect("height"))
        })
        .collect()
}

fn assert_near(found: [f32; 4], expected: [f32; 4], tolerance: f32, what: &str) {
    for (f, e) in found.iter().zip(expected) {
        assert!(
            (f - e).abs() <= tolerance,
            "{what}: found {found:?}, expected {expected:?}"
        );
    }
}

/// A word's box in pdftotext's frame (points, origin top left).
fn expected_box(bbox: BBox, scale_x: f32, scale_y: f32) -> [f32; 4] {
    [
        bbox.left as f32 * scale_x,
        bbox.top as f32 * scale_y,
        bbox.right as f32 * scale_x,
        bbox.bottom as f32 * scale_y,
    ]
}

#[test]
fn text_layer_gives_back_words_lines_and_boxes() {
    let dir = tempfile::tempdir().unwrap();
    let page = letter_page();
    let (width, height) = page.size_points();
    let pdf = text_layer_pdf(
        &[LayerPage {
            width_pt: width,
            height_pt: height,
            layout: Some(&page),
        }],
        &INFO,
    )
    .unwrap();
    let pdf = write(dir.path(), "layer.pdf", &pdf);
    assert_qpdf_clean(&pdf);
    assert_eq!(
        text_lines(&pdf, 1),
        ["Invoice number 3104-562", "Amount due:", "2,238,006.89"]
    );
    let boxes = word_boxes(&pdf);
    let words: Vec<&Word> = page.words().collect();
    assert_eq!(boxes.len(), words.len());
    for ((text, found), word) in boxes.iter().zip(words) {
        assert_eq!(text, &word.text);
        assert_near(*found, expected_box(word.bbox, 0.24, 0.24), 0.5, text);
    }
}

#[test]
fn page_size_other_than_the_layout_aspect_scales_the_boxes() {
    let dir = tempfile::tempdir().unwrap();
    // 1000x500 px stretched over a 300x300 pt page: x by 0.3, y by 0.6.
    let page = layout(
        1000,
        500,
        100,
        vec![vec![
            word("stretched", 100, 100, 400, 150),
            word("words", 450, 100, 700, 150),
        ]],
    );
    let pdf = text_layer_pdf(
        &[LayerPage {
            width_pt: 300.0,
            height_pt: 300.0,
            layout: Some(&page),
        }],
        &INFO,
    )
    .unwrap();
    let pdf = write(dir.path(), "scaled.pdf", &pdf);
    assert_qpdf_clean(&pdf);
    assert_eq!(page_sizes(&pdf, 1), [(300.0, 300.0)]);
    let boxes = word_boxes(&pdf);
    assert_eq!(boxes.len(), 2);
    assert_near(boxes[0].1, [30.0, 60.0, 120.0, 90.0], 0.5, "stretched");
    assert_near(boxes[1].1, [135.0, 60.0, 210.0, 90.0], 0.5, "words");
}

#[test]
fn non_latin_text_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let lines = [
        vec!["Ångström", "façade", "naïve", "Łódź"],
        vec!["Ελληνικά", "κείμενο", "Кириллица"],
        vec!["中文字符", "日本語の", "한국어"],
        vec!["𝔸𝔹ℂ", "emoji😀", "ﬁ"],
    ];
    // Words 60 px high, 30 px a character, 20 px apart: like print.
    let rows: Vec<Vec<Word>> = lines
        .iter()
        .enumerate()
        .map(|(row, texts)| {
            let top = 100 + 100 * row as u32;
            let mut left = 100;
            texts
                .iter()
                .map(|text| {
                    let right = left + 30 * text.chars().count() as u32;
                    let placed = word(text, left, top, right, top + 60);
                    left = right + 20;
                    placed
                })
                .collect()
        })
        .collect();
    let page = layout(2000, 600, 200, rows);
    let (width, height) = page.size_points();
    let pdf = text_layer_pdf(
        &[LayerPage {
            width_pt: width,
            height_pt: height,
            layout: Some(&page),
        }],
        &INFO,
    )
    .unwrap();
    let pdf = write(dir.path(), "unicode.pdf", &pdf);
    assert_qpdf_clean(&pdf);
    let expected: Vec<String> = lines.iter().map(|words| words.join(" ")).collect();
    assert_eq!(text_lines(&pdf, 1), expected);
    let info = run("pdfinfo", &["-enc", "UTF-8", path(&pdf)]);
    assert!(String::from_utf8_lossy(&info.stdout).contains("Ångström — test"));
}

#[test]
fn text_layer_page_renders_blank_white() {
    let dir = tempfile::tempdir().unwrap();
    let page = letter_page();
    let pdf = text_layer_pdf(
        &[LayerPage {
            width_pt: 612.0,
            height_pt: 792.0,
            layout: Some(&page),
        }],
        &INFO,
    )
    .unwrap();
    let pdf = write(dir.path(), "layer.pdf", &pdf);
    let (width, height, samples) = render_gray(&pdf, dir.path(), 72);
    assert_eq!((width, height), (612, 792));
    assert!(samples.iter().all(|&v| v == 255), "the text layer drew something");
}

/// A gray test card: columns of 8 levels, rows darkening downwards.
fn test_card(width: usize, height: usize) -> Vec<u8> {
    (0..width * height)
        .map(|i| {
            let (x, y) = (i % width, i / width);
            (255 - 32 * (x * 8 / width) - 3 * (y * 8 / height)) as u8
        })
        .collect()
}

#[test]
fn image_page_renders_as_the_image_under_its_text() {
    let dir = tempfile::tempdir().unwrap();
    let (width, height) = (64usize, 48usize);
    let pixels = test_card(width, height);
    // 72 dpi: one pixel per point, so a 72 dpi rendering is the image itself.
    let page = layout(
        64,
        48,
        72,
        vec![vec![word("gray", 4, 4, 30, 14), word("card", 34, 4, 60, 14)]],
    );
    let pdf = image_pdf(
        &[ImagePage {
            image: PageImage::Gray8 {
                data: &pixels,
                width: 64,
                height: 48,
            },
            layout: &page,
        }],
        &INFO,
    )
    .unwrap();
    let pdf = write(dir.path(), "image.pdf", &pdf);
    assert_qpdf_clean(&pdf);
    assert_eq!(text_lines(&pdf, 1), ["gray card"]);
    // NB: Poppler smooths images drawn at less than 4x their size, so the
    // page is rendered at 4 device pixels per image pixel.
    let (w, h, rendered) = render_gray(&pdf, dir.path(), 288);
    assert_eq!((w, h), (4 * width, 4 * height));
    assert!(
        rendered == enlarge(&pixels, width, height, 4),
        "rendering differs from the image"
    );
}

#[test]
fn rgb_image_is_scaled_to_the_layout_page() {
    let dir = tempfile::tempdir().unwrap();
    // A 2x2 RGB image on a layout of 40x20 px at 72 dpi: each image pixel
    // covers 20x10 points.
    let pixels = [255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255];
    let page = layout(40, 20, 72, vec![]);
    let pdf = image_pdf(
        &[ImagePage {
            image: PageImage::Rgb8 {
                data: &pixels,
                width: 2,
                height: 2,
            },
            layout: &page,
        }],
        &INFO,
    )
    .unwrap();
    let pdf = write(dir.path(), "rgb.pdf", &pdf);
    assert_qpdf_clean(&pdf);
    assert_eq!(page_sizes(&pdf, 1), [(40.0, 20.0)]);
    let prefix = dir.path().join("rgb");
    run("pdftoppm", &["-r", "72", "-singlefile", path(&pdf), path(&prefix)]);
    let (w, h, rgb) = parse_pnm(&std::fs::read(dir.path().join("rgb.ppm")).unwrap(), b"P6");
    assert_eq!((w, h), (40, 20));
    let at = |x: usize, y: usize| &rgb[3 * (y * w + x)..3 * (y * w + x) + 3];
    // pixel centres of each quarter: no interpolation between them
    assert_eq!(at(10, 5), [255, 0, 0]);
    assert_eq!(at(30, 5), [0, 255, 0]);
    assert_eq!(at(10, 15), [0, 0, 255]);
    assert_eq!(at(30, 15), [255, 255, 255]);
}

#[test]
fn jpeg_is_passed_through_untouched() {
    let dir = tempfile::tempdir().unwrap();
    // Real JPEGs of a gray test card, as Poppler writes them: gray, RGB
    // and Adobe CMYK (inverted samples).
    let (width, height) = (64usize, 48usize);
    let card = test_card(width, height);
    let page = layout(64, 48, 72, vec![]);
    let source = image_pdf(
        &[ImagePage {
            image: PageImage::Gray8 {
                data: &card,
                width: 64,
                height: 48,
            },
            layout: &page,
        }],
        &INFO,
    )
    .unwrap();
    let source = write(dir.path(), "source.pdf", &source);
    let prefix = dir.path().join("card");
    for (program, format, components) in [
        ("pdftocairo", "-jpeg", 1u8),
        ("pdftoppm", "-jpeg", 3),
        ("pdftoppm", "-jpegcmyk", 4),
    ] {
        let mut args = vec!["-r", "72", format, "-singlefile"];
        if components == 1 {
            args.push("-gray");
        }
        args.extend([path(&source), path(&prefix)]);
        run(program, &args);
        let jpeg = std::fs::read(dir.path().join("card.jpg")).unwrap();

        let words = layout(64, 48, 72, vec![vec![word("photo", 2, 2, 40, 12)]]);
        let image = |width, height| ImagePage {
            image: PageImage::Jpeg {
                data: &jpeg,
                width,
                height,
                components,
            },
            layout: &words,
        };
        let pdf = image_pdf(&[image(64, 48)], &INFO).unwrap();
        assert!(
            pdf.windows(jpeg.len()).any(|w| w == jpeg.as_slice()),
            "jpeg bytes not embedded as given"
        );
        let pdf = write(dir.path(), "jpeg.pdf", &pdf);
        assert_qpdf_clean(&pdf);
        assert_eq!(text_lines(&pdf, 1), ["photo"]);
        let (_, _, rendered) = render_gray(&pdf, dir.path(), 288);
        let expected = enlarge(&card, width, height, 4);
        // JPEG loss rings at the card's sharp steps; an inverted or
        // misplaced image would be off by about a hundred everywhere.
        let diffs: Vec<u8> = rendered.iter().zip(&expected).map(|(a, b)| a.abs_diff(*b)).collect();
        let worst = diffs.iter().copied().max().unwrap();
        let mean = diffs.iter().map(|&d| f64::from(d)).sum::<f64>() / diffs.len() as f64;
        assert!(
            worst <= 48 && mean <= 6.0,
            "{components} components: off by {worst}, {mean:.2} on average"
        );

        // the caller's sizes must agree with the JPEG's own header
        let wrong = image_pdf(&[image(48, 64)], &INFO);
        assert_eq!(wrong.unwrap_err().reason, skep_api::FailureReason::Corrupt);
    }
}

#[test]
fn underlay_makes_a_scanned_pdf_searchable() {
    let dir = tempfile::tempdir().unwrap();
    // Two scanned pages as another tool makes them: img2pdf over PGM files
    // (its default is 96 dpi).
    let (width, height) = (400usize, 300usize);
    let mut scans = Vec::new();
    for page in 0..2 {
        let mut pgm = format!("P5\n{width} {height}\n255\n").into_bytes();
        pgm.extend(test_card(width, height).iter().map(|v| v.saturating_sub(40 * page)));
        scans.push(write(dir.path(), &format!("scan{page}.pgm"), &pgm));
    }
    let scanned = dir.path().join("scanned.pdf");
    run("img2pdf", &[path(&scans[0]), path(&scans[1]), "-o", path(&scanned)]);

    let sizes = page_sizes(&scanned, 2);
    assert_eq!(sizes.len(), 2);
    let layouts = [
        layout(
            400,
            300,
            96,
            vec![vec![word("first", 20, 20, 120, 40), word("page", 130, 20, 210, 40)]],
        ),
        layout(
            400,
            300,
            96,
            vec![vec![word("zweite", 20, 20, 140, 40), word("Seite", 150, 20, 240, 40)]],
        ),
    ];
    let pages: Vec<LayerPage<'_>> = sizes
        .iter()
        .zip(&layouts)
        .map(|(&(width_pt, height_pt), layout)| LayerPage {
            width_pt,
            height_pt,
            layout: Some(layout),
        })
        .collect();
    let layer = write(dir.path(), "layer.pdf", &text_layer_pdf(&pages, &INFO).unwrap());
    assert_qpdf_clean(&layer);

    let searchable = dir.path().join("searchable.pdf");
    run(
        "qpdf",
        &[path(&scanned), "--underlay", path(&layer), "--", path(&searchable)],
    );
    assert_qpdf_clean(&searchable);
    assert_eq!(text_lines(&searchable, 1), ["first page"]);
    assert_eq!(text_lines(&searchable, 2), ["zweite Seite"]);
    let boxes = word_boxes(&searchable);
    assert_near(
        boxes[0].1,
        expected_box(layouts[0].blocks[0].paragraphs[0].lines[0].words[0].bbox, 0.75, 0.75),
        0.5,
        "first",
    );
    // the page looks exactly as scanned
    assert_eq!(
        render_gray(&searchable, dir.path(), 72),
        render_gray(&scanned, dir.path(), 72)
    );
}

#[test]
fn empty_and_odd_layouts_still_make_valid_pdfs() {
    let dir = tempfile::tempdir().unwrap();
    let odd = layout(
        1000,
        1000,
        100,
        vec![
            vec![word("   ", 10, 10, 50, 50), word("\t\n", 60, 10, 90, 50)],
            vec![word("flat", 100, 200, 300, 200), word("thin", 310, 200, 310, 260)],
            vec![word("outside", 5_000, 9_000, u32::MAX, u32::MAX)],
            vec![word("inverted", 600, 600, 100, 100)],
            vec![],
            vec![word("normal", 100, 700, 400, 760)],
        ],
    );
    let empty = PageLayout::default();
    let pages = [
        LayerPage {
            width_pt: 720.0,
            height_pt: 720.0,
            layout: Some(&odd),
        },
        LayerPage {
            width_pt: 720.0,
            height_pt: 720.0,
            layout: Some(&empty),
        },
        LayerPage {
            width_pt: 100.0,
            height_pt: 50.0,
            layout: None,
        },
    ];
    let pdf = write(dir.path(), "odd.pdf", &text_layer_pdf(&pages, &INFO).unwrap());
    assert_qpdf_clean(&pdf);
    let text = pdftotext(&pdf, 1);
    for found in ["flat", "thin", "outside", "inverted", "normal"] {
        assert!(text.contains(found), "{found} missing from {text:?}");
    }
    assert_eq!(text_lines(&pdf, 2), Vec::<String>::new());
    assert_eq!(page_sizes(&pdf, 3)[2], (100.0, 50.0));

    // an image page whose layout has no size takes the image's
    let pixels = [128u8; 30 * 20];
    let image = ImagePage {
        image: PageImage::Gray8 {
            data: &pixels,
            width: 30,
            height: 20,
        },
        layout: &empty,
    };
    let pdf = write(dir.path(), "image.pdf", &image_pdf(&[image], &INFO).unwrap());
    assert_qpdf_clean(&pdf);
    // PageLayout::default() has dpi 0, read as 1 dpi: 72 points a pixel.
    assert_eq!(page_sizes(&pdf, 1), [(2160.0, 1440.0)]);
}

/// Regression: Tesseract's line boxes differ by a few pixels (ascenders,
/// descenders) and one smudged word can double a line's height; font
/// sizes taken from each raw line box made Poppler start new blocks, and
/// `pdftotext` printed blank lines inside paragraphs.
#[test]
fn uneven_ocr_line_heights_keep_one_line_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let tsv =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/layout/page-0001.psm6.tsv"))
            .unwrap();
    let page = skep_doc::layout::from_tesseract_tsv(&tsv, 1, 1240, 880, 150).unwrap();
    let expected: Vec<String> = page
        .blocks
        .iter()
        .flat_map(|b| &b.paragraphs)
        .flat_map(|p| &p.lines)
        .map(|line| line.words.iter().map(|w| w.text.as_str()).collect::<Vec<_>>().join(" "))
        .collect();
    assert!(expected.len() > 10);
    let (width, height) = page.size_points();
    let pdf = text_layer_pdf(
        &[LayerPage {
            width_pt: width,
            height_pt: height,
            layout: Some(&page),
        }],
        &INFO,
    )
    .unwrap();
    let pdf = write(dir.path(), "ocr.pdf", &pdf);
    assert_qpdf_clean(&pdf);
    assert_eq!(text_lines(&pdf, 1), expected);
    // every word starts and ends where Tesseract saw it
    let boxes = word_boxes(&pdf);
    for ((text, found), word) in boxes.iter().zip(page.words()) {
        assert_eq!(text, &word.text);
        let expected = expected_box(word.bbox, 0.48, 0.48);
        assert!(
            (found[0] - expected[0]).abs() < 0.1 && (found[2] - expected[2]).abs() < 0.1,
            "{text}"
        );
    }
}
