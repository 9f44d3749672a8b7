const app = getApp();

Page({
  data: { drinks: [], count: 0 },
  onLoad() {
    my.request({
      url: `${app.globalData.apiBase}/menu`,
      success: ({ data }) => this.setData({ drinks: data.drinks }),
    });
  },
  addToCart(event) {
    const drink = this.data.drinks.find((d) => d.id === event.target.dataset.id);
    app.globalData.cart.push(drink);
    my.setStorage({ key: 'cart', data: app.globalData.cart });
    this.setData({ count: app.globalData.cart.length });
    my.showToast({ content: `${drink.name} added` });
  },
  openCart() {
    my.navigateTo({ url: '/pages/cart/cart' });
  },
});
