"""Data in: HW8 arrays, image files, folders and zips, labels and sources; read at a model's input format.

`arrays` holds the input format and the pixel rules, `images` the files, `testsets` the labels.
"""

from ad.data.arrays import (ARRAY_LAYOUTS, CENTRE, FITS, IMAGE_SIZE, MAX_IMAGE_SIZE, MAX_PIXELS, MIN_IMAGE_SIZE,
                            WHOLE, array_to_image, as_uint8, check_input_format, image_to_array, load_array,
                            standardize_images, validate_images)
from ad.data.images import (IMAGE_SUFFIXES, MAX_ZIP_BYTES, MAX_ZIP_MEMBERS, MIN_TRAINING_IMAGES, load_images,
                            load_normal_images, load_zip, open_image)
from ad.data.testsets import (NORMAL_FOLDERS, TestSet, check_labels, check_two_classes, labels_from_folders,
                              labels_itself, load_labels, load_sources, load_test_set, name_sources,
                              parse_source_names, source_subsets)

__all__ = ["ARRAY_LAYOUTS", "CENTRE", "FITS", "IMAGE_SIZE", "IMAGE_SUFFIXES", "MAX_IMAGE_SIZE", "MAX_PIXELS",
           "MAX_ZIP_BYTES", "MAX_ZIP_MEMBERS", "MIN_IMAGE_SIZE", "MIN_TRAINING_IMAGES", "NORMAL_FOLDERS", "TestSet",
           "WHOLE", "array_to_image", "as_uint8", "check_input_format", "check_labels", "check_two_classes",
           "image_to_array", "labels_from_folders", "labels_itself", "load_array", "load_images", "load_labels",
           "load_normal_images", "load_sources", "load_test_set", "load_zip", "name_sources", "open_image",
           "parse_source_names", "source_subsets", "standardize_images", "validate_images"]
