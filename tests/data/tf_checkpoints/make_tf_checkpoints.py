"""How the checkpoints beside this file were made (needs TensorFlow; not part of the tests).

Run once with tensorflow-cpu 2.21: ``python make_tf_checkpoints.py tests/data/tf_checkpoints``.
``saver/variables`` is a ``tf.compat.v1.train.Saver`` checkpoint (the format of a TF Hub
module's ``variables/variables``); ``object/ckpt`` is a ``tf.train.Checkpoint`` (it holds a
string tensor, the object graph). tests/test_zoo_tfckpt.py knows the values written here.
"""

import os
import sys

import numpy as np
import tensorflow as tf

out = sys.argv[1]
g = tf.Graph()
with g.as_default():
    vals = {
        "encoder/e1/kernel": np.arange(12, dtype=np.float32).reshape(2, 2, 1, 3) / 8 - 0.5,
        "encoder/e1/bias": np.array([0.25, -1.5, 3.0], dtype=np.float32),
        "decoder/dense/kernel": (np.arange(12, dtype=np.float64).reshape(3, 4) - 6) / 3,
        "global_step": np.int64(12345),
        "steps": np.arange(5, dtype=np.int32) * -7,
        "flags": np.array([True, False, True]),
    }
    vs = [tf.compat.v1.Variable(v, name=k) for k, v in vals.items()]
    saver = tf.compat.v1.train.Saver(vs)
    with tf.compat.v1.Session() as s:
        s.run(tf.compat.v1.global_variables_initializer())
        prefix = os.path.join(out, "saver", "variables")
        saver.save(s, prefix, write_meta_graph=False, write_state=False)
ck = tf.train.Checkpoint(w=tf.Variable(np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)))
ck.write(os.path.join(out, "object", "ckpt"))
