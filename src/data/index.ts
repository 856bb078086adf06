/** The data stage: reading CSV / IDX files, splitting, normalizing. */
import type { AnyDataConfig } from '../recipe/schema.js';
import { loadData as loadTabularData, type LoadedData, type LoadOptions } from './dataset.js';
import { loadTextData } from './text.js';

/**
 * Loads the data a recipe's `data` section describes (CSV, IDX images, or text for language
 * models): reads the files, maps labels to class ids, splits, normalizes (`dataset.ts`, `text.ts`).
 */
export async function loadData(cfg: AnyDataConfig, opts: LoadOptions): Promise<LoadedData> {
  return cfg.source === 'text' ? loadTextData(cfg, opts) : loadTabularData(cfg, opts);
}

export { loadTextData, encodeText, textVocabulary, textPreprocess, chars, PAD_CHAR, type TextPreprocess } from './text.js';
export {
  applyNormalize,
  computeNormalize,
  stratifiedSplit,
  checkSplitSizes,
  sortLabels,
  resolveDataPath,
  dataPathCandidates,
  packageRoot,
  type Split,
  type NormalizeStats,
  type Preprocess,
  type LoadedData,
  type LoadOptions,
} from './dataset.js';
export { readCsv, parseCsvText, type CsvTable, type CsvOptions, type SourceRef } from './csv.js';
export {
  readIdxImages,
  readIdxLabels,
  readIdxPair,
  parseIdxImages,
  parseIdxLabels,
  isGzip,
  IDX_IMAGES_MAGIC,
  IDX_LABELS_MAGIC,
  type IdxImages,
  type IdxLabels,
} from './idx.js';
