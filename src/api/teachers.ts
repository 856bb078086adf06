import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { loadCheckpoint } from '../train/checkpoint.js';
import { shippedTeacherDirs } from '../train/teacher-path.js';
import { HepolyError } from '../util/errors.js';
import { shortPath } from '../util/paths.js';

/**
 * `teachers/teachers.json`: how each shipped teacher was made and what it scored. Architecture,
 * parameters and size are read from the teacher itself, so only measured facts live here.
 */
const TeacherEntry = z.strictObject({
  name: z.string().min(1),
  /** folder (hepoly checkpoint) or .onnx file, relative to teachers/ */
  path: z.string().min(1),
  /** the exact command that made it, run from the repository root */
  command: z.string().min(1),
  test_accuracy: z.number().min(0).max(1),
  test_samples: z.number().int().positive(),
  /** YYYY-MM-DD */
  trained: z.string().regex(/^\d{4}-\d{2}-\d{2}$/),
  /** for ONNX teachers, which hepoly cannot describe from the file */
  architecture: z.string().optional(),
  /** the recipes that distil from it */
  used_by: z.array(z.string()).default([]),
});
const TeacherIndex = z.strictObject({ teachers: z.array(TeacherEntry) });

/** One row of `hepoly teachers --json`. */
export interface ShippedTeacher {
  name: string;
  path: string;
  format: 'hepoly' | 'onnx';
  architecture: string;
  /** null for ONNX teachers */
  params: number | null;
  test_accuracy: number;
  test_samples: number;
  bytes: number;
  trained: string;
  command: string;
  used_by: string[];
}

/** The shipped teachers (from the first `teachers/` folder that has an index: `root`'s, then the package's). */
export function listTeachers(root = process.cwd()): ShippedTeacher[] {
  const dir = shippedTeacherDirs(root).find((d) => existsSync(join(d, 'teachers.json')));
  if (!dir) return [];
  const file = join(dir, 'teachers.json');
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new HepolyError(`${shortPath(file)}: not valid JSON (${(e as Error).message}). Fix the file`);
  }
  const parsed = TeacherIndex.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new HepolyError(`${shortPath(file)}: ${issue.path.join('.')}: ${issue.message}. Fix the entry (see src/api/teachers.ts for the fields)`);
  }
  return parsed.data.teachers.map((t) => describe(dir, t));
}

function describe(dir: string, t: z.infer<typeof TeacherEntry>): ShippedTeacher {
  const path = join(dir, t.path);
  if (!existsSync(path)) throw new HepolyError(`${shortPath(join(dir, 'teachers.json'))}: teacher ${t.name}: ${t.path} is missing from ${shortPath(dir)}. Restore it or remove the entry`);
  const common = { name: t.name, path, test_accuracy: t.test_accuracy, test_samples: t.test_samples, trained: t.trained, command: t.command, used_by: t.used_by, bytes: diskBytes(path) };
  if (!statSync(path).isDirectory()) return { ...common, format: 'onnx', architecture: t.architecture ?? 'ONNX model', params: null };
  const ckpt = loadCheckpoint(path);
  let params = 0;
  for (const w of ckpt.weights.values()) params += w.data.length;
  const m = ckpt.recipe.model;
  return { ...common, format: 'hepoly', architecture: t.architecture ?? `${m.kind}, ${m.activation.kind}: ${ckpt.recipe.description ?? ckpt.recipe.name}`, params };
}

/** Bytes of a file, or of every file under a folder. */
function diskBytes(path: string): number {
  const st = statSync(path);
  if (!st.isDirectory()) return st.size;
  return readdirSync(path).reduce((sum, f) => sum + diskBytes(join(path, f)), 0);
}
