r"""MSN ViT-S/16 on iNaturalist-2018 (long-tailed), 300 epochs, prior: uniform.

Needs the TFDS array_record build of i_naturalist2018 in $TFDS_DATA_DIR (prepared by the user).
Run:
  python -m jaxssl.train --config configs/msn_vits16_inat18.py --workdir workdirs/msn_inat18
Expect: the long-tailed baseline PMSN is compared with.
"""

from jaxssl.train.recipes import INAT18_TRAIN_SIZE, imagenet


def get_config():
    c = imagenet("msn", "vit_small", epochs=300, dataset="tfds:i_naturalist2018",
                 dataset_size=INAT18_TRAIN_SIZE)
    c.loss.prior = "uniform"
    return c
