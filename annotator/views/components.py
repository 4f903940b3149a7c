import streamlit as st

st.title("components")
st.info("Coming soon.")
