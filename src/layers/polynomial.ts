import * as tf from '@tensorflow/tfjs-core';
import { POLYNOMIAL, hasFusedPolynomial } from '../train/kernels/fused-kernels.js';

/**
 * Polynomial activations, written once: `evalPolynomial` (plain numbers) is the reference the
 * tests and the HE compiler use, `polynomialTf` is the same formula on tensors for training.
 * Coefficients are ascending: y = c0 + c1 x + c2 x^2 + ...
 */

/** Horner's rule on one number. */
export function evalPolynomial(coeffs: ArrayLike<number>, x: number): number {
  let y = 0;
  for (let i = coeffs.length - 1; i >= 0; i--) y = y * x + coeffs[i];
  return y;
}

/**
 * Horner's rule on a tensor; `coeffs` is a 1-D tensor (trainable) of length degree+1.
 * Where the active backend has the fused kernel (wasm SIMD, cpu; see
 * src/train/kernels/fused-kernels.ts) the forward pass is one kernel and the backward pass one
 * more (dx = dy p'(x), dcoeffs[k] = sum(dy x^k)); elsewhere (tfjs-node) the op-by-op formula
 * below, differentiated by tfjs. Both compute the same f32 Horner steps.
 */
export function polynomialTf(x: tf.Tensor, coeffs: tf.Tensor1D): tf.Tensor {
  const n = coeffs.shape[0];
  if (n >= 2 && x.dtype === 'float32' && coeffs.dtype === 'float32' && hasFusedPolynomial()) {
    return tf.engine().runKernel(POLYNOMIAL, { x, coeffs }) as tf.Tensor;
  }
  const c = tf.unstack(coeffs);
  let y: tf.Tensor = c[n - 1];
  for (let i = n - 2; i >= 0; i--) y = tf.add(tf.mul(y, x), c[i]);
  return y;
}

/**
 * Initial coefficients of a trainable polynomial: close to the identity plus a small square
 * term (the quad's a=0.1, b=1, c=0 of the reference models), so a fresh network starts near
 * a linear one and the square term grows only as far as training needs it.
 */
export function initialPolynomialCoeffs(degree: number): Float32Array {
  const c = new Float32Array(degree + 1);
  if (degree >= 1) c[1] = 1;
  if (degree >= 2) c[2] = 0.1;
  return c;
}
