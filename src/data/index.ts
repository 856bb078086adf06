/** The data stage: reading CSV / IDX files, splitting, normalizing. */
export {
  loadData,
  applyNormalize,
  computeNormalize,
  stratifiedSplit,
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
