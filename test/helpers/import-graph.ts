import { existsSync, readFileSync } from 'node:fs';
import { dirname, relative, resolve } from 'node:path';
import ts from 'typescript';

/**
 * The modules a source file loads at run time, transitively: static imports and re-exports
 * (type-only ones are erased by the compiler and load nothing) and dynamic `import('...')`
 * of a string literal. Relative `.js` specifiers resolve to the `.ts` source beside them.
 */
export interface ImportGraph {
  /** repository-relative paths of the project modules reached, the entries included */
  modules: Set<string>;
  /** packages (bare specifiers, `node:` builtins) imported somewhere in the graph */
  packages: Set<string>;
  /** dynamic imports whose target is not a string literal (they cannot be followed) */
  unresolvedDynamic: string[];
}

export function runtimeImportGraph(root: string, entries: string[]): ImportGraph {
  const out: ImportGraph = { modules: new Set(), packages: new Set(), unresolvedDynamic: [] };
  const stack = entries.map((e) => resolve(root, e));
  while (stack.length) {
    const file = stack.pop()!;
    const rel = relative(root, file);
    if (out.modules.has(rel)) continue;
    out.modules.add(rel);
    for (const spec of runtimeSpecifiers(file, out)) {
      if (!spec.startsWith('.')) {
        out.packages.add(spec);
        continue;
      }
      const target = resolve(dirname(file), spec.replace(/\.js$/, '.ts'));
      if (!existsSync(target)) throw new Error(`${rel}: import ${spec} resolves to ${relative(root, target)}, which does not exist`);
      stack.push(target);
    }
  }
  return out;
}

function runtimeSpecifiers(file: string, out: ImportGraph): string[] {
  const src = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.ES2022, true);
  const specs: string[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node) && ts.isStringLiteral(node.moduleSpecifier) && !isTypeOnlyImport(node)) specs.push(node.moduleSpecifier.text);
    else if (ts.isExportDeclaration(node) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier) && !isTypeOnlyExport(node)) specs.push(node.moduleSpecifier.text);
    else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const [arg] = node.arguments;
      if (arg && ts.isStringLiteralLike(arg)) specs.push(arg.text);
      else out.unresolvedDynamic.push(`${file}: ${node.getText(src)}`);
    }
    ts.forEachChild(node, visit);
  };
  visit(src);
  return specs;
}

/** `import type {...}`, or `import { type A, type B }` with no value binding: erased. */
function isTypeOnlyImport(node: ts.ImportDeclaration): boolean {
  const clause = node.importClause;
  if (!clause) return false; // a side-effect import loads the module
  if (clause.isTypeOnly) return true;
  if (clause.name) return false;
  const named = clause.namedBindings;
  if (!named) return false;
  if (ts.isNamespaceImport(named)) return false;
  return named.elements.length > 0 && named.elements.every((e) => e.isTypeOnly);
}

function isTypeOnlyExport(node: ts.ExportDeclaration): boolean {
  if (node.isTypeOnly) return true;
  const clause = node.exportClause;
  return !!clause && ts.isNamedExports(clause) && clause.elements.length > 0 && clause.elements.every((e) => e.isTypeOnly);
}

/** Source text that makes or uses a secret key: key generation, decryption, a SecretKey object. */
export const KEY_CODE = /\bKeyGenerator\s*\(|\.secretKey\s*\(|\bDecryptor\s*\(|\bSecretKey\s*\(/;

/** The modules of `modules` whose source makes or uses a secret key. */
export function keyCodeModules(root: string, modules: Iterable<string>): string[] {
  return [...modules].filter((m) => KEY_CODE.test(readFileSync(resolve(root, m), 'utf8'))).sort();
}
