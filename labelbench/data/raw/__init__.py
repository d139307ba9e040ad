"""The raw-data stage: one converter per source (registry: :mod:`labelbench.data.raw.registry`), all writing the
common raw layout (:mod:`labelbench.data.raw.layout`): ``images/<image_id>`` PNGs, ``labels.csv``, ``classes.txt``.

===================  ==========================================  ===============================
dataset              sources (file names under the sources dir)  labels.csv row order
===================  ==========================================  ===============================
cifar-10             cifar-10-binary.tar.gz (fetched, md5)       index i (torchvision order)
cifar-10n-agg/worst  raw cifar-10 folder + cifar-10n_human_      index i
                     labels.npz
cifar-10s            raw cifar-10 folder + cifar-10s_noisy_      ImageFolder (class, number)
                     labels_noise_amount_0.2_sparsity_0.4.csv
roman-numeral        roman-numeral.zip + roman-numeral_manual_   ImageFolder (split, class, name)
                     review.xlsx
food-101n            Food-101N_release.zip                       ImageFolder (split, class, name)
digits               none (scikit-learn)                         ImageFolder (digit, index)
imagefolder          data/added/<name> (add-dataset --images)    ImageFolder (the user's paths)
===================  ==========================================  ===============================
"""
